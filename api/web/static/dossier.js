// The dossier page's thumbnails turn the preview frame to their page. Chrome's PDF viewer ignores
// a change of the #page fragment alone, so a fresh frame loads the PDF with the new fragment
// (from the browser's cache: the PDF's URL names its version).
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a[data-page]") : null;
  var frame = document.getElementById("preview");
  if (!link || !frame || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  document.querySelectorAll("a[data-page][aria-current]").forEach(function (a) {
    a.removeAttribute("aria-current");
  });
  link.setAttribute("aria-current", "page");
  var fresh = frame.cloneNode(false);
  fresh.src = link.href;
  frame.replaceWith(fresh);
});
