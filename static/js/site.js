// Small progressive enhancements: live preview of the page text, and page-title autocomplete for link fields.
// Everything works without this file; it only saves clicks.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrf ? csrf.getAttribute("content") : "";

  function debounce(fn, ms) {
    var t;
    return function () {
      var args = arguments, self = this;
      clearTimeout(t);
      t = setTimeout(function () { fn.apply(self, args); }, ms);
    };
  }

  // Live preview: POST the text to /preview, which renders it through the one sanitising function.
  document.querySelectorAll("textarea[data-preview]").forEach(function (area) {
    var pane = document.getElementById(area.getAttribute("data-preview"));
    if (!pane) return;
    var pending = null;
    var update = debounce(function () {
      if (pending) pending.abort();
      pending = new AbortController();
      var body = new URLSearchParams();
      body.set("body", area.value);
      fetch("/preview", {
        method: "POST", body: body, signal: pending.signal, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken, "Accept": "application/json" }
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) { pane.innerHTML = data.html; pane.setAttribute("data-rendered", "1"); }
        })
        .catch(function () { /* a newer keystroke took over, or the network is down */ });
    }, 250);
    area.addEventListener("input", update);
    if (area.value.trim()) update();
  });

  // "Add another" for repeated rows (links, tenures): without JavaScript the button posts the form back and the
  // server adds a row; with it, the last row is copied here, emptied and renumbered, and focus moves into it.
  document.querySelectorAll("button[data-add-row]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var group = button.closest("[data-repeat]");
      var rows = group ? group.querySelectorAll(".repeat__row") : [];
      if (!rows.length) return;
      event.preventDefault();
      var last = rows[rows.length - 1];
      var copy = last.cloneNode(true);
      var index = rows.length;
      copy.querySelectorAll("input, select, textarea").forEach(function (control) {
        control.removeAttribute("id");
        control.removeAttribute("autofocus");
        if (control.tagName === "SELECT") control.selectedIndex = 0;
        else control.value = "";
        var name = control.getAttribute("name") || "";
        // Tenure rows are numbered: f.tenures.<i>.<key>
        control.setAttribute("name", name.replace(/^(f\.[a-z_]+)\.\d+\./, "$1." + index + "."));
        var label = control.getAttribute("aria-label");
        if (label) control.setAttribute("aria-label", label.replace(/\d+$/, String(index + 1)));
      });
      var legend = copy.querySelector("legend");
      if (legend) legend.textContent = legend.textContent.replace(/\d+$/, String(index + 1));
      last.parentNode.insertBefore(copy, last.nextSibling);
      copy.querySelectorAll("[data-page-autocomplete]").forEach(watchTitles);
      var first = copy.querySelector("input, select, textarea");
      if (first) first.focus();
    });
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
