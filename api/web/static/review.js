/* The review queue's pages (review_pages.py): an enlarged view of a page, page selection, and the
   code box that a USB barcode reader types into. Everything works without this file too. */
(function () {
  "use strict";

  /* A refused change (422, 409) comes back as the panel with its message: show it. */
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if (status === 422 || status === 409) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  /* Click a thumbnail: the page large, in a dialog (the link opens it in a tab without JS). */
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a.enlarge");
    var viewer = document.getElementById("viewer");
    if (!link || !viewer || typeof viewer.showModal !== "function" || e.ctrlKey || e.metaKey) {
      return;
    }
    e.preventDefault();
    var img = viewer.querySelector("img");
    img.src = link.href;
    img.alt = link.title || "";
    viewer.showModal();
  });
  document.addEventListener("click", function (e) {
    if (e.target.id === "viewer") { e.target.close(); }  /* a click beside the page closes it */
  });

  /* Select all / none of the waiting pages. */
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-select]");
    if (!button) { return; }
    var on = button.getAttribute("data-select") === "all";
    document.querySelectorAll("#assign-form input[name=pages]").forEach(function (box) {
      box.checked = on;
    });
    focusCode();
  });

  /* The batch page's code box, or a dossier's "correct the code" box while its code is in doubt
     (read by OCR): the box a scanned code belongs in. */
  function codeBox() {
    return document.getElementById("code") || document.querySelector("input[data-scan-target]");
  }

  function focusCode() {
    var box = codeBox();
    if (box) { box.focus(); }
  }

  function typesText(el) {
    if (!el || !el.matches) { return false; }
    if (el.matches("textarea, select, [contenteditable]")) { return true; }
    return el.matches("input") && !el.matches("[type=checkbox], [type=radio], [type=submit], [type=button]");
  }

  /* A barcode reader types wherever the focus is: after a click on a page (a checkbox, a
     button), the next characters still go into the code box. */
  document.addEventListener("keydown", function (e) {
    var box = codeBox();
    if (!box || e.ctrlKey || e.altKey || e.metaKey || e.key.length !== 1 || e.key === " ") { return; }
    if (typesText(document.activeElement) || document.querySelector("dialog[open]")) { return; }
    box.focus();
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("#assign-form input[name=pages]")) { focusCode(); }
  });

  document.documentElement.classList.add("js");
})();
