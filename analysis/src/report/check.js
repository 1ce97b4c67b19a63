// Checks what the browser made of the charts: each must hold as many data marks as were drawn
// (data-marks) and take up room on the page. A failed check throws, so window.onerror marks the
// page. Then the legends become toggles, and the verdict goes on <html>.
(function () {
  var root = document.documentElement;
  var charts = document.querySelectorAll("svg[data-chart]");
  var empty = 0;
  charts.forEach(function (svg, i) {
    var name = svg.getAttribute("data-chart") + " chart " + (i + 1) + " (" + svg.getAttribute("aria-label") + ")";
    var expected = Number(svg.getAttribute("data-marks"));
    var drawn = svg.querySelectorAll(".mark").length;
    if (drawn !== expected) throw new Error(name + ": " + drawn + " of " + expected + " marks in the document");
    if (svg.getBoundingClientRect().width <= 0) throw new Error(name + ": takes no room on the page");
    if (drawn === 0) {
      empty += 1;
      svg.parentNode.classList.add("empty");
    }
  });
  document.querySelectorAll("svg [data-toggle]").forEach(function (entry) {
    entry.addEventListener("click", function () {
      var hidden = entry.classList.toggle("off");
      var series = entry.closest("svg").querySelectorAll('[data-series="' + entry.dataset.toggle + '"]');
      series.forEach(function (mark) {
        mark.style.display = hidden ? "none" : "";
      });
    });
  });
  root.dataset.charts = String(charts.length);
  root.dataset.emptyCharts = String(empty);
  if (root.dataset.report !== "error") root.dataset.report = "ok";
})();
