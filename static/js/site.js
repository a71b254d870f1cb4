// Small progressive enhancements: live preview of the page text, and page-title autocomplete for link fields.
// Everything works without this file; it only saves clicks.
(function () {
  "use strict";
  var debounce = KB.debounce;

  // Live preview of the page text.
  document.querySelectorAll("textarea[data-preview]").forEach(function (area) {
    var update = KB.livePreview(area, document.getElementById(area.getAttribute("data-preview")));
    if (update && area.value.trim()) update();
  });

  // Link fields: suggest page titles from /api/suggest into the shared datalist; the value stays a page address.
  var list = document.getElementById("page-titles");
  var watchTitles = function () {};
  if (list) {
    var fill = debounce(function (input) {
      var text = input.value.split("\n").pop().trim();
      if (text.length < 2) return;
      fetch("/api/suggest?q=" + encodeURIComponent(text), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
        .then(function (data) {
          list.textContent = "";
          (data.suggestions || []).forEach(function (s) {
            var opt = document.createElement("option");
            opt.value = s.slug;
            opt.label = s.title;
            opt.textContent = s.title;
            list.appendChild(opt);
          });
        }).catch(function () {});
    }, 150);
    watchTitles = function (input) {
      input.addEventListener("input", function () { fill(input); });
    };
    document.querySelectorAll("[data-page-autocomplete]").forEach(watchTitles);
  }
})();
