// The timeline picture: show a bar's details below the picture when it is pointed at or reached with the keyboard.
// Without this file the bars still link to their pages, show their details as a tooltip (SVG <title>), and the
// table below the picture has everything.
(function () {
  "use strict";
  var box = document.getElementById("timeline-detail");
  var svg = document.querySelector(".timeline-svg");
  if (box && svg) {
    var fallback = box.getAttribute("data-default") || box.textContent;
    box.textContent = fallback;
    var show = function (event) {
      var bar = event.target.closest ? event.target.closest("a[data-detail]") : null;
      if (!bar) return;
      box.textContent = bar.getAttribute("data-detail");
      box.classList.add("is-active");
    };
    var hide = function () {
      box.textContent = fallback;
      box.classList.remove("is-active");
    };
    svg.addEventListener("mouseover", show);
    svg.addEventListener("focusin", show);
    svg.addEventListener("mouseleave", hide);
    svg.addEventListener("focusout", function (event) {
      if (!event.relatedTarget || !svg.contains(event.relatedTarget)) hide();
    });
  }
  document.querySelectorAll("button[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
