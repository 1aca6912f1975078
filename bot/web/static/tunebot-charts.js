// Draws the charts of a tunebot page with the vendored uPlot, from the JSON the server embedded beside each chart.
// Charts are kept in window.tunebotCharts (by element id) so that browser tests can read what was drawn.
(function () {
  "use strict";
  var charts = (window.tunebotCharts = {});
  var palette = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700"];

  function width(el) { return Math.max(320, Math.min(1100, el.clientWidth || 900)); }

  // Loss curves: one line per run; their steps need not be the same (uPlot wants one shared x array).
  function lines(el, spec) {
    var xs = {};
    spec.series.forEach(function (s) { s.points.forEach(function (p) { xs[p[0]] = true; }); });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    var data = [x];
    var series = [{ label: spec.x }];
    spec.series.forEach(function (s, i) {
      var byX = {};
      s.points.forEach(function (p) { byX[p[0]] = p[1]; });
      data.push(x.map(function (v) { return v in byX ? byX[v] : null; }));
      series.push({ label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: true,
                    points: { show: false } });
    });
    var u = new uPlot({ width: width(el), height: 300, series: series, axes: [{ label: spec.x }, { label: "loss" }],
                        scales: { x: { time: false } } }, data, el);
    charts[el.id] = { u: u, spec: spec };
  }

  // Score history (rustc-perf's dashboard): x = position of the commit on the branch, y = score in points, a band for
  // the 95% interval of each point; clicking a point opens its run.
  function history(el, spec) {
    var pts = spec.points;
    var data = [pts.map(function (p) { return p.x; }), pts.map(function (p) { return p.y; }),
                pts.map(function (p) { return p.low; }), pts.map(function (p) { return p.high; })];
    var sha = {};
    spec.commits.forEach(function (c, i) { sha[i] = c.sha; });
    var opts = {
      width: width(el), height: 300,
      scales: { x: { time: false, range: function (u, lo, hi) { return [lo - 0.5, hi + 0.5]; } } },
      series: [
        { label: "commit", value: function (u, v) { return v == null ? "" : sha[v] || ""; } },
        { label: spec.benchmark, stroke: "#0969da", width: 2, points: { show: true, size: 9, fill: "#0969da" } },
        { label: "95% low", stroke: "rgba(9,105,218,.25)", width: 1, points: { show: false } },
        { label: "95% high", stroke: "rgba(9,105,218,.25)", width: 1, points: { show: false } }
      ],
      bands: [{ series: [3, 2], fill: "rgba(9,105,218,.12)" }],
      axes: [{ label: "commit", values: function (u, splits) { return splits.map(function (v) {
                 return Number.isInteger(v) ? (sha[v] || "") : ""; }); } },
             { label: "score (points)" }]
    };
    var u = new uPlot(opts, data, el);
    u.over.style.cursor = "pointer";
    u.over.addEventListener("click", function () {
      var i = u.cursor.idx;
      if (i != null && pts[i]) { window.location.href = pts[i].url; }
    });
    charts[el.id] = { u: u, spec: spec };
  }

  document.querySelectorAll("script.chart-data").forEach(function (node) {
    var el = document.getElementById(node.dataset.target);
    if (!el) { return; }
    var spec = JSON.parse(node.textContent);
    (node.dataset.kind === "history" ? history : lines)(el, spec);
  });
})();
