
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var COLORS = ["#2e7d32", "#c62828", "#90a4ae", "#ef6c00", "#6a1b9a", "#455a64",
                "#1565c0", "#00838f", "#ad1457", "#9e9d24"];
  var W = 640, H = 256, M = {l: 64, r: 14, t: 34, b: 30}, GAP = 8;
  var drawn = 0;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x, y, s, anchor, cls) {
    var t = el("text", {x: x, y: y, "text-anchor": anchor || "middle"}, parent);
    if (cls) { t.setAttribute("class", cls); }
    t.textContent = s;
    return t;
  }
  function nice(max) {
    if (!(max > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(max))), f = max / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function fmt(v) {
    if (Math.abs(v) >= 1000) { return Math.round(v).toLocaleString("en-US"); }
    return String(Math.round(v * 100) / 100);
  }
  var multiDay = DATA.minutes.length > 0 &&
    Math.floor(DATA.minutes[0] / 1440) !== Math.floor(DATA.minutes[DATA.minutes.length - 1] / 1440);
  function hhmm(minute) {
    var iso = new Date(minute * 60000).toISOString();
    return multiDay ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
  }
  function svgFor(id, height, unit) {
    var card = document.getElementById(id);
    var svg = el("svg", {viewBox: "0 0 " + W + " " + height, role: "img",
      "data-unit": unit}, card);
    text(svg, 4, 14, unit, "start", "unit");
    return {card: card, svg: svg};
  }
  function frame(id, ymax, unit) {
    var f = svgFor(id, H, unit);
    var top = nice(ymax);
    f.y = function (v) { return M.t + (H - M.t - M.b) * (top - v) / top; };
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4;
      el("line", {x1: M.l, x2: W - M.r, y1: f.y(v), y2: f.y(v), stroke: "#e6e9ee"}, f.svg);
      text(f.svg, M.l - 6, f.y(v) + 4, fmt(v), "end", "ylabel");
    }
    return f;
  }
  function legend(card, names, colors) {
    var box = document.createElement("div");
    box.className = "legend";
    names.forEach(function (name, i) {
      var span = document.createElement("span"), sw = document.createElement("i");
      sw.style.background = colors[i % colors.length];
      span.appendChild(sw);
      span.appendChild(document.createTextNode(name));
      box.appendChild(span);
    });
    card.appendChild(box);
  }
  function finish(f, marks) {
    if (!marks) { text(f.svg, W / 2, f.svg.viewBox.baseVal.height / 2, "no data"); }
    f.svg.setAttribute("data-drawn", "true");
    f.svg.setAttribute("data-marks", String(marks));
    drawn += 1;
  }
  function xscale(minutes) {
    var w = DATA.width_minutes, lo = minutes[0], hi = minutes[minutes.length - 1] + w;
    var span = Math.max(hi - lo, w);
    var band = (W - M.l - M.r) * w / span;
    return {x: function (m) { return M.l + (W - M.l - M.r) * (m - lo) / span; }, band: band};
  }
  // Bottom labels, measured: a label that would come closer than GAP to the one before (or
  // stick out of the plot) is removed, so the kept ones never overlap whatever the width.
  function bottomLabels(f, items) {
    var lastRight = -Infinity;
    items.forEach(function (it) {
      var t = text(f.svg, it.x, H - 10, it.label, "middle", "xlabel");
      var w = t.getComputedTextLength();
      var left = it.x - w / 2, right = it.x + w / 2;
      if (left < lastRight + GAP || left < M.l - 30 || right > W) {
        f.svg.removeChild(t);
        return;
      }
      if (it.title) { el("title", {}, t).textContent = it.title; }
      lastRight = right;
    });
  }
  function timeAxis(f, minutes, xs) {
    bottomLabels(f, minutes.map(function (m) {
      return {x: xs.x(m) + xs.band / 2, label: hhmm(m)};
    }));
  }
  // Time series as stacked bars: one bar per bucket, per-minute values.
  function stacked(id, columns, names, colors, unit) {
    colors = colors || COLORS;
    var minutes = DATA.minutes, w = DATA.width_minutes, max = 0;
    minutes.forEach(function (_, i) {
      var s = 0;
      columns.forEach(function (c) { s += DATA.series[c][i] / w; });
      max = Math.max(max, s);
    });
    var f = frame(id, max, unit), marks = 0;
    if (minutes.length) {
      var xs = xscale(minutes), bw = Math.max(1, Math.min(xs.band - 1, 48));
      minutes.forEach(function (m, i) {
        var base = 0;
        columns.forEach(function (c, j) {
          var v = DATA.series[c][i] / w;
          if (v <= 0) { return; }
          var r = el("rect", {x: xs.x(m) + (xs.band - bw) / 2, width: bw,
            y: f.y(base + v), height: Math.max(0.5, f.y(base) - f.y(base + v)),
            fill: colors[j % colors.length]}, f.svg);
          el("title", {}, r).textContent = hhmm(m) + " " + names[j] + ": " + fmt(v) + " " + unit;
          base += v;
          marks += 1;
        });
      });
      timeAxis(f, minutes, xs);
    }
    legend(f.card, names, colors);
    finish(f, marks);
  }
  // Time series as lines, all in one unit, with an optional threshold line.
  function lines(id, columns, names, perMinute, unit, threshold) {
    var minutes = DATA.minutes, w = DATA.width_minutes, max = threshold || 0;
    var vals = columns.map(function (c) {
      return DATA.series[c].map(function (v) { return perMinute ? v / w : v; });
    });
    vals.forEach(function (vs) { vs.forEach(function (v) { max = Math.max(max, v); }); });
    var f = frame(id, max, unit), marks = 0;
    if (minutes.length) {
      var xs = xscale(minutes);
      vals.forEach(function (vs, j) {
        var d = "";
        vs.forEach(function (v, i) {
          d += (i ? "L" : "M") + (xs.x(minutes[i]) + xs.band / 2).toFixed(1) + " " +
            f.y(v).toFixed(1);
        });
        el("path", {d: d, fill: "none", stroke: COLORS[j % COLORS.length], "stroke-width": 1.6},
          f.svg);
        vs.forEach(function (v, i) {
          var c = el("circle", {cx: xs.x(minutes[i]) + xs.band / 2, cy: f.y(v), r: 2.2,
            fill: COLORS[j % COLORS.length]}, f.svg);
          el("title", {}, c).textContent = hhmm(minutes[i]) + " " + names[j] + ": " + fmt(v);
        });
        marks += 1;
      });
      if (threshold) {
        el("line", {x1: M.l, x2: W - M.r, y1: f.y(threshold), y2: f.y(threshold),
          stroke: "#c62828", "stroke-dasharray": "4 3"}, f.svg);
        text(f.svg, W - M.r - 4, f.y(threshold) - 4, "alert " + fmt(threshold), "end");
      }
      timeAxis(f, minutes, xs);
    }
    legend(f.card, names, COLORS);
    finish(f, marks);
  }
  // Percentiles per category as horizontal bars: one row per provider or route, its full name
  // on the left (the label column grows to the longest name, up to half the width).
  function horizontal(id, categories, groups, names, unit) {
    var rowH = 8 * groups.length + 12, top = M.t;
    var height = top + rowH * Math.max(1, categories.length) + 26;
    var f = svgFor(id, height, unit), marks = 0, labels = [], widest = 0;
    categories.forEach(function (cat, i) {
      var t = text(f.svg, 0, top + rowH * i + rowH / 2 + 4, cat, "end", "ylabel");
      widest = Math.max(widest, t.getComputedTextLength());
      labels.push(t);
    });
    var left = Math.min(Math.ceil(widest) + 12, W / 2);
    labels.forEach(function (t, i) {
      t.setAttribute("x", left - 8);
      var full = categories[i];
      // Longer than half the chart: shorten in the middle, keep both ends readable.
      while (t.getComputedTextLength() > left - 12 && full.length > 8) {
        var mid = Math.ceil(full.length / 2);
        full = full.slice(0, mid - 1) + full.slice(mid + 1);
        t.textContent = full.slice(0, Math.floor(full.length / 2)) + "\u2026" +
          full.slice(Math.floor(full.length / 2));
      }
      el("title", {}, t).textContent = categories[i];  // the full name on hover
    });
    var max = 0;
    groups.forEach(function (g) { g.forEach(function (v) { if (v > max) { max = v; } }); });
    var scaleMax = nice(max), plotW = W - M.r - left;
    var x = function (v) { return left + plotW * v / scaleMax; };
    var bottom = top + rowH * Math.max(1, categories.length);
    for (var k = 0; k <= 4; k++) {
      var v = scaleMax * k / 4;
      el("line", {x1: x(v), x2: x(v), y1: top, y2: bottom, stroke: "#e6e9ee"}, f.svg);
      text(f.svg, x(v), bottom + 16, fmt(v), k === 0 ? "start" : k === 4 ? "end" : "middle",
        "xlabel");
    }
    categories.forEach(function (cat, i) {
      groups.forEach(function (g, j) {
        var val = g[i];
        if (val === null || val === undefined || val <= 0) { return; }
        var r = el("rect", {x: left, y: top + rowH * i + 6 + 8 * j,
          width: Math.max(1, x(val) - left), height: 7, fill: COLORS[j % COLORS.length]}, f.svg);
        el("title", {}, r).textContent = cat + " " + names[j] + ": " + fmt(val) + " " + unit;
        marks += 1;
      });
    });
    if (names.length > 1) { legend(f.card, names, COLORS); }
    finish(f, marks);
  }

  var outcomeCols = DATA.outcomes.map(function (o) { return "refresh_" + o; });
  stacked("chart-refresh-outcomes", outcomeCols, DATA.outcomes, COLORS, "refreshes / min");
  stacked("chart-on-read", ["on_read_valid", "expired_at_read"],
    ["token still valid", "token already expired"], ["#ef6c00", "#c62828"], "refreshes / min");
  horizontal("chart-duration", DATA.duration.categories,
    [DATA.duration.p50, DATA.duration.p95, DATA.duration.p99], ["p50", "p95", "p99"], "ms");
  horizontal("chart-margin", DATA.margin.labels, [DATA.margin.counts], ["successful refreshes"],
    "successful refreshes");
  lines("chart-scan-due", ["due_max"], ["due connections (max per scan)"], false,
    "connections");
  lines("chart-scan-rate", ["scans", "enqueued"], ["scans", "refreshes enqueued"], true,
    "per minute");
  lines("chart-overdue", ["overdue_max"], ["oldest overdue"], false, "seconds", 1200);
  stacked("chart-api", ["api_ok", "api_4xx", "api_5xx"], ["< 400", "4xx", "5xx"],
    ["#2e7d32", "#ef6c00", "#c62828"], "requests / min");
  horizontal("chart-api-latency", DATA.api_latency.categories,
    [DATA.api_latency.p50, DATA.api_latency.p95, DATA.api_latency.p99], ["p50", "p95", "p99"],
    "ms");
  document.body.setAttribute("data-charts-drawn", String(drawn));
})();
