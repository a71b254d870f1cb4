// Onboarding tours, small enhancements only: everything here also works without JavaScript, through plain
// links and form buttons. Adds: note previews while typing, moving and removing stops without a round trip,
// page-title suggestions when adding a stop, arrow keys between stops, and a print button on the binder.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var debounce = KB.debounce;

  // Preview of a note or the introduction.
  function wirePreview(area) {
    KB.livePreview(area, document.getElementById(area.getAttribute("data-note-preview")));
  }
  document.querySelectorAll("textarea[data-note-preview]").forEach(wirePreview);

  // The tour editor: Up, Down and Remove act in the page; the order is the order of the fields when saved.
  var editor = document.querySelector("form[data-tour-editor]");
  if (editor) {
    var list = document.getElementById("stop-rows");
    var status = document.getElementById("stops-status");

    var announce = function (text) {
      if (status) { status.textContent = ""; setTimeout(function () { status.textContent = text; }, 30); }
    };
    var markUnsaved = function () {
      if (document.getElementById("unsaved-note")) return;
      var note = document.createElement("p");
      note.className = "notice notice--unsaved";
      note.id = "unsaved-note";
      note.textContent = "You have changes that are not saved yet. Press Save tour to keep them.";
      editor.parentNode.insertBefore(note, editor);
    };
    var rows = function () { return Array.prototype.slice.call(list.querySelectorAll("[data-stop-row]")); };
    var titleOf = function (row) {
      var t = row.querySelector("[data-stop-title]");
      return t ? t.textContent.trim() : "";
    };
    var renumber = function () {
      var all = rows();
      all.forEach(function (row, k) {
        row.querySelector("[data-stop-number]").textContent = "Stop " + (k + 1);
        var up = row.querySelector('[data-move="up"]'), down = row.querySelector('[data-move="down"]');
        var remove = row.querySelector("[data-remove]");
        up.value = "up:" + k; up.id = "up-" + k; up.disabled = k === 0;
        down.value = "down:" + k; down.id = "down-" + k; down.disabled = k === all.length - 1;
        remove.value = "remove:" + k;
      });
    };

    list && list.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button || !list.contains(button)) return;
      var row = button.closest("[data-stop-row]");
      var move = button.getAttribute("data-move");
      if (move) {
        event.preventDefault();
        var sibling = move === "up" ? row.previousElementSibling : row.nextElementSibling;
        if (!sibling) return;
        if (move === "up") list.insertBefore(row, sibling); else list.insertBefore(sibling, row);
        renumber();
        row.classList.remove("stop-row--moved");
        void row.offsetWidth;  // restart the highlight
        row.classList.add("stop-row--moved");
        var position = rows().indexOf(row) + 1;
        (button.disabled ? row.querySelector('[data-move]:not([disabled])') : button).focus();
        announce("“" + titleOf(row) + "” is now stop " + position + " of " + rows().length + ".");
        markUnsaved();
      } else if (button.hasAttribute("data-remove")) {
        event.preventDefault();
        var next = row.nextElementSibling || row.previousElementSibling;
        var title = titleOf(row);
        row.parentNode.removeChild(row);
        renumber();
        var target = next ? next.querySelector("[data-remove]") : document.getElementById("add_page");
        if (target) target.focus();
        announce("Removed the stop “" + title + "”. Save the tour to keep the change.");
        markUnsaved();
      }
    });
    editor.addEventListener("input", function (event) {
      if (event.target.id !== "add_page") markUnsaved();
    });

    // Adding a stop: page titles from /api/suggest as you type. The typed text also works on its own (no JS).
    var input = editor.querySelector("[data-stop-search]");
    var box = document.getElementById("add-stop-suggestions");
    var addButton = document.getElementById("add-stop");
    if (input && box && addButton) {
      var items = [], active = -1;
      var inTour = function () {
        return Array.prototype.map.call(editor.querySelectorAll('input[name="stop_page"]'), function (i) { return i.value; });
      };
      var close = function () {
        box.hidden = true; box.textContent = ""; items = []; active = -1;
        input.setAttribute("aria-expanded", "false");
        input.removeAttribute("aria-activedescendant");
      };
      var highlight = function (k) {
        active = k;
        Array.prototype.forEach.call(box.children, function (li, j) { li.setAttribute("aria-selected", j === k ? "true" : "false"); });
        if (k >= 0) input.setAttribute("aria-activedescendant", box.children[k].id);
      };
      var choose = function (k) {
        input.value = items[k].slug;
        close();
        addButton.click();
      };
      var fetchSuggestions = debounce(function () {
        var q = input.value.trim();
        if (q.length < 2) { close(); return; }
        fetch("/api/suggest?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { "Accept": "application/json" } })
          .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
          .then(function (data) {
            if (input.value.trim() !== q) return;
            var taken = inTour();
            items = (data.suggestions || []).filter(function (s) { return taken.indexOf(s.slug) < 0; });
            box.textContent = "";
            items.forEach(function (s, k) {
              var li = document.createElement("li");
              li.id = "add-stop-option-" + k;
              li.setAttribute("role", "option");
              li.setAttribute("aria-selected", "false");
              li.textContent = s.title;
              if (s.kind) {
                var kind = document.createElement("span");
                kind.className = "kind-label";
                kind.textContent = s.kind;
                li.appendChild(kind);
              }
              li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(k); });
              box.appendChild(li);
            });
            active = -1;
            box.hidden = items.length === 0;
            input.setAttribute("aria-expanded", items.length ? "true" : "false");
          }).catch(function () { close(); });
      }, 150);
      input.addEventListener("input", fetchSuggestions);
      input.addEventListener("blur", function () { setTimeout(close, 150); });
      input.addEventListener("keydown", function (e) {
        if (e.key === "ArrowDown" && items.length) { e.preventDefault(); highlight((active + 1) % items.length); }
        else if (e.key === "ArrowUp" && items.length) { e.preventDefault(); highlight((active - 1 + items.length) % items.length); }
        else if (e.key === "Escape") { close(); }
        else if (e.key === "Enter") {
          e.preventDefault();
          if (active >= 0) choose(active); else if (input.value.trim()) addButton.click();
        }
      });
    }
  }

  // A stop: the left and right arrow keys go to the previous and next stop (not while typing).
  var keyed = document.querySelectorAll("a[data-tour-key]");
  if (keyed.length) {
    document.addEventListener("keydown", function (e) {
      if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey || e.defaultPrevented) return;
      var t = e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(t.tagName))) return;
      var link = document.querySelector('a[data-tour-key="' + e.key + '"]');
      if (link) { e.preventDefault(); window.location.href = link.href; }
    });
  }

  // The binder: a button for the browser's print dialog (where "Save as PDF" is).
  document.querySelectorAll("button[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
