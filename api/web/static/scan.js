/* The scanning station's few behaviours: duplex only with the feeder; a barcode reader's Enter in
   the dossier code field starts the scan when the form is complete (a scanner chosen, the agency
   given), else moves to what is missing; one click starts one scan; the chosen scanner stays in
   sight when the scanner list is read again. Without JavaScript the page works as a plain form. */
(function () {
  "use strict";

  function syncDuplex(form) {
    var platen = form.querySelector("input[name=source][value=platen]");
    var duplex = form.querySelector("#duplex");
    if (!platen || !duplex) return;
    duplex.disabled = platen.checked;
    if (platen.checked) duplex.checked = false;
    duplex.closest("label").classList.toggle("off", platen.checked);
  }

  function showChosen(list) {
    var chosen = list.querySelector("input:checked");
    if (!chosen) return;
    var item = chosen.closest("li");
    var top = item.offsetTop, bottom = top + item.offsetHeight;
    if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - (list.clientHeight - item.offsetHeight) / 2);
    }
  }

  document.addEventListener("htmx:afterSwap", function (e) {
    var list = e.target.id === "scanner-list" && e.target.querySelector(".scan-devices");
    if (list) showChosen(list);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("scan-form");
    if (!form) return;
    var go = document.getElementById("scan-go");
    syncDuplex(form);
    form.addEventListener("change", function (e) {
      if (e.target.name === "source") syncDuplex(form);
    });
    var code = document.getElementById("dossier");
    if (code) {
      code.addEventListener("keydown", function (e) {
        if (e.key !== "Enter") return;
        e.preventDefault();
        var missing = form.querySelector("[name=scanner]:checked") ? null
          : form.querySelector("[name=scanner]");
        var agency = form.querySelector("#agency[required]");
        if (!missing && agency && !agency.value.trim()) missing = agency;
        if (missing) { missing.focus(); return; }
        if (form.requestSubmit) form.requestSubmit(go); else go.click();
      });
    }
    form.addEventListener("submit", function () {
      setTimeout(function () { go.disabled = true; }, 0);
    });
    window.addEventListener("pageshow", function () { go.disabled = false; });
  });
})();
