/* Search as you type (titles from /api/suggest) under the site search box, and "Tried before" on the form for a
   new initiative (an input with data-tried-before="ID" fills the element with that id from /api/tried-before).
   No inline script anywhere (the Content-Security-Policy forbids it): this file is loaded with defer. Everything is
   built with textContent, never innerHTML, so a page title can never become markup. */
(function () {
  "use strict";

  var debounce = KB.debounce;

  // Fetch JSON, aborting the previous request of the same kind: only the newest answer is ever shown.
  function latestFetcher() {
    var controller = null;
    return function (url) {
      if (controller) { controller.abort(); }
      controller = typeof AbortController === "function" ? new AbortController() : null;
      return fetch(url, {
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
        signal: controller ? controller.signal : undefined
      }).then(function (r) { return r.ok ? r.json() : null; });
    };
  }

  function wikiUrl(slug) { return "/wiki/" + encodeURIComponent(slug); }

  function kindLabel(kind) {
    return kind ? kind.charAt(0).toUpperCase() + kind.slice(1) : "";
  }

  /* ---- Search as you type ---- */
  function attachSuggest(input, list) {
    if (!input || !list || input.dataset.suggestAttached) { return; }
    input.dataset.suggestAttached = "1";
    var fetchLatest = latestFetcher();
    var items = [];
    var active = -1;
    var lastQuery = null;

    input.setAttribute("role", "combobox");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-haspopup", "listbox");

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function setActive(i) {
      var options = list.querySelectorAll("[role=option]");
      if (!options.length) { return; }
      active = (i + options.length) % options.length;
      for (var k = 0; k < options.length; k++) {
        options[k].setAttribute("aria-selected", k === active ? "true" : "false");
        options[k].classList.toggle("is-active", k === active);
      }
      input.setAttribute("aria-activedescendant", options[active].id);
    }

    function go(i) {
      if (items[i]) { window.location.assign(wikiUrl(items[i].slug)); }
    }

    function render(suggestions) {
      items = suggestions || [];
      while (list.firstChild) { list.removeChild(list.firstChild); }
      active = -1;
      if (!items.length) { close(); return; }
      items.forEach(function (s, i) {
        var li = document.createElement("li");
        li.id = list.id + "-option-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.className = "suggestion";
        var a = document.createElement("a");
        a.href = wikiUrl(s.slug);
        a.tabIndex = -1;
        a.textContent = s.title;
        var kind = document.createElement("span");
        kind.className = "suggestion__kind kind-label kind-label--" + (s.kind || "page");
        kind.textContent = kindLabel(s.kind);
        li.appendChild(a);
        li.appendChild(kind);
        // mousedown, not click: it fires before the input loses focus and closes the list.
        li.addEventListener("mousedown", function (e) { e.preventDefault(); go(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    var lookup = debounce(function () {
      var text = input.value.trim();
      if (text === lastQuery) { return; }
      lastQuery = text;
      if (!text) { render([]); return; }
      fetchLatest("/api/suggest?q=" + encodeURIComponent(text))
        .then(function (data) { if (input.value.trim() === text) { render(data ? data.suggestions : []); } })
        .catch(function (err) { if (!err || err.name !== "AbortError") { render([]); } });
    }, 100);

    input.addEventListener("input", lookup);
    input.addEventListener("keydown", function (e) {
      var open = !list.hidden && items.length;
      if (e.key === "ArrowDown") {
        if (open) { e.preventDefault(); setActive(active + 1); } else { lastQuery = null; lookup(); }
      } else if (e.key === "ArrowUp") {
        if (open) { e.preventDefault(); setActive(active - 1); }
      } else if (e.key === "Enter") {
        if (open && active >= 0) { e.preventDefault(); go(active); }
      } else if (e.key === "Escape") {
        if (open) { e.preventDefault(); close(); }
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });
    input.addEventListener("focus", function () { if (items.length && input.value.trim()) { list.hidden = false; input.setAttribute("aria-expanded", "true"); } });
  }

  /* ---- Tried before (new initiative form) ---- */
  function renderTriedBefore(box, data) {
    while (box.firstChild) { box.removeChild(box.firstChild); }
    var initiatives = (data && data.initiatives) || [];
    var lessons = (data && data.lessons) || [];
    if (!initiatives.length && !lessons.length) { box.hidden = true; return; }
    var h = document.createElement("h2");
    h.textContent = "Tried before";
    box.appendChild(h);
    var intro = document.createElement("p");
    intro.className = "tried-before__intro";
    intro.textContent = "The district has worked on this before. Read what happened before starting again.";
    box.appendChild(intro);

    function section(title, list, withReason) {
      if (!list.length) { return; }
      var h3 = document.createElement("h3");
      h3.textContent = title;
      box.appendChild(h3);
      var ul = document.createElement("ul");
      ul.className = "tried-before__list";
      list.forEach(function (item) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = wikiUrl(item.slug);
        a.textContent = item.title;
        li.appendChild(a);
        if (item.period) {
          var p = document.createElement("span");
          p.className = "tried-before__period";
          p.textContent = item.period;
          li.appendChild(document.createTextNode(" "));
          li.appendChild(p);
        }
        if (withReason && item.status) {
          var b = document.createElement("span");
          b.className = "badge badge--" + item.status;
          b.textContent = item.status;
          li.appendChild(document.createTextNode(" "));
          li.appendChild(b);
        }
        if (withReason && item.ended_reason) {
          var r = document.createElement("span");
          r.className = "tried-before__reason";
          r.textContent = "why it ended: " + item.ended_reason.replace(/-/g, " ");
          li.appendChild(document.createTextNode(" "));
          li.appendChild(r);
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
    }

    section("Earlier initiatives", initiatives, true);
    section("Lessons learned", lessons, false);
    box.hidden = false;
  }

  function attachTriedBefore(input) {
    var box = document.getElementById(input.getAttribute("data-tried-before"));
    if (!box || input.dataset.triedBeforeAttached) { return; }
    input.dataset.triedBeforeAttached = "1";
    var fetchLatest = latestFetcher();
    var last = null;
    var update = debounce(function () {
      var title = input.value.trim();
      if (title === last) { return; }
      last = title;
      if (title.length < 3) { renderTriedBefore(box, null); return; }
      var url = "/api/tried-before?title=" + encodeURIComponent(title);
      var exclude = input.getAttribute("data-tried-before-exclude");
      if (exclude) { url += "&exclude=" + encodeURIComponent(exclude); }
      fetchLatest(url)
        .then(function (data) { if (input.value.trim() === title) { renderTriedBefore(box, data); } })
        .catch(function () { /* a stale or failed request: keep what is shown */ });
    }, 300);
    input.addEventListener("input", update);
    input.addEventListener("change", update);
    if (input.value.trim()) { update(); }
  }

  function init() {
    attachSuggest(document.getElementById("site-search-q"), document.getElementById("site-search-suggestions"));
    var inputs = document.querySelectorAll("[data-tried-before]");
    for (var i = 0; i < inputs.length; i++) { attachTriedBefore(inputs[i]); }
  }

  window.kbSearch = { attachSuggest: attachSuggest, attachTriedBefore: attachTriedBefore };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
