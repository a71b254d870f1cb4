// Shared by the site's small scripts (loaded first, with defer): debounce, the CSRF token for fetch, and live
// Markdown preview through POST /preview, which renders with the one sanitising function on the server.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments, self = this;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(self, args); }, ms);
    };
  }

  // Preview `area` into `pane` as the user types; a newer keystroke aborts the older request.
  function livePreview(area, pane) {
    if (!pane || area.hasAttribute("data-preview-wired")) return;
    area.setAttribute("data-preview-wired", "1");
    var pending = null;
    var update = debounce(function () {
      if (pending) pending.abort();
      pending = new AbortController();
      var body = new URLSearchParams();
      body.set("body", area.value);
      fetch("/preview", {
        method: "POST", body: body, signal: pending.signal, credentials: "same-origin",
        headers: { "X-CSRFToken": KB.csrfToken, "Accept": "application/json" }
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { pane.innerHTML = data.html; pane.setAttribute("data-rendered", "1"); } })
        .catch(function () { /* a newer keystroke took over, or the network is down */ });
    }, 250);
    area.addEventListener("input", update);
    return update;
  }

  window.KB = { csrfToken: meta ? meta.getAttribute("content") : "", debounce: debounce, livePreview: livePreview };
})();
