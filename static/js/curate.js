// Curation pages: "tick all" in the queues, copy buttons for one-time addresses, and a confirmation before
// sweeping actions. Everything works without this file.
(function () {
  "use strict";

  document.querySelectorAll("input[data-check-all]").forEach(function (all) {
    var form = all.form;
    var name = all.getAttribute("data-check-all");
    var boxes = function () { return form ? form.querySelectorAll('input[type=checkbox][name="' + name + '"]') : []; };
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
    });
    if (form) {
      form.addEventListener("change", function (e) {
        if (e.target === all || e.target.name !== name) return;
        var list = Array.prototype.slice.call(boxes());
        var ticked = list.filter(function (b) { return b.checked; }).length;
        all.checked = ticked === list.length;
        all.indeterminate = ticked > 0 && ticked < list.length;
      });
    }
  });

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    button.addEventListener("click", function () {
      field.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
