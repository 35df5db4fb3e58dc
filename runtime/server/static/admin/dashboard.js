/*
 * The admin dashboard: reads /api/telemetry and /api/telemetry/report with the session cookie
 * and draws the summary, tables and inline SVG charts. No libraries, nothing from a CDN: it
 * works on a machine without internet access. Text is always set with textContent.
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var SERIES = [
    { key: "pageViews", label: "Page views" },
    { key: "actions", label: "Actions" },
    { key: "apiCalls", label: "API calls" },
    { key: "errors", label: "Errors" },
    { key: "sessions", label: "Sessions" },
  ];
  var COLORS = ["#2f6fde", "#12a37f", "#d9822b", "#d64545", "#7a5af8"];

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function fmtInt(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms >= 60000) {
      var s = Math.round(ms / 1000);
      return Math.floor(s / 60) + "m " + (s % 60) + "s";
    }
    if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
    return Math.round(ms) + " ms";
  }

  function fmtPct(p) {
    return p === null || p === undefined ? "–" : p.toFixed(2) + "%";
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      function (response) {
        if (response.status === 401) {
          location.href = "/admin/login";
          throw new Error("signed out");
        }
        if (!response.ok) throw new Error(url + ": HTTP " + response.status);
        return response.json();
      }
    );
  }

  function fillRows(tableId, rows, empty, columns) {
    var body = $(tableId).querySelector("tbody");
    body.textContent = "";
    if (!rows.length) {
      var tr = el("tr");
      tr.appendChild(el("td", { colspan: String(columns), class: "empty" }, empty));
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (cell) {
        if (cell && cell.bar !== undefined) {
          var td = el("td", { class: "bar-cell" });
          var bar = el("div", { class: "hbar" + (cell.err ? " err" : "") });
          bar.style.width = Math.max(1, Math.round(cell.bar * 100)) + "%";
          td.appendChild(bar);
          tr.appendChild(td);
        } else {
          tr.appendChild(el("td", { class: cell.num ? "num" : "" }, cell.text));
        }
      });
      body.appendChild(tr);
    });
  }

  function renderSummary(summary, period) {
    $("summary-pageViews").textContent = fmtInt(summary.pageViews);
    $("summary-actions").textContent = fmtInt(summary.actions);
    $("summary-errors").textContent = fmtInt(summary.errors);
    $("summary-apiCalls").textContent = fmtInt(summary.apiCalls);
    $("summary-sessions").textContent = fmtInt(summary.sessions);
    $("summary-avgSessionLength").textContent = fmtMs(summary.avgSessionLength);
    $("summary-avgApiLatency").textContent = fmtMs(summary.avgApiLatency);
    $("summary-errorRate").textContent = fmtPct(summary.errorRate);
    $("period-label").textContent =
      period.startDate.slice(0, 10) + " – " + period.endDate.slice(0, 10) + " (UTC)";
  }

  function renderDaily(daily) {
    var box = $("daily-chart");
    box.textContent = "";
    var W = 960, H = 260, L = 44, R = 8, T = 10, B = 28;
    var max = 1;
    daily.forEach(function (d) {
      SERIES.forEach(function (s) {
        max = Math.max(max, d[s.key]);
      });
    });
    // Four gridlines at round values: the step is 1, 2 or 5 times a power of ten.
    var raw = max / 4;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var tick = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (t) {
      return t >= raw;
    })[0];
    tick = Math.max(1, tick);
    var top = tick * 4;
    var chart = svg("svg", {
      id: "daily-svg",
      viewBox: "0 0 " + W + " " + H,
      role: "img",
      "aria-label": "Events per day by type",
    });
    for (var i = 0; i <= 4; i++) {
      var y = T + ((H - T - B) * i) / 4;
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "axis" }));
      chart.appendChild(
        svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmtInt(Math.round(top - (top * i) / 4)))
      );
    }
    var slot = (W - L - R) / Math.max(1, daily.length);
    var bw = Math.max(1, (slot * 0.8) / SERIES.length);
    daily.forEach(function (d, di) {
      SERIES.forEach(function (s, si) {
        var h = ((H - T - B) * d[s.key]) / top;
        var rect = svg("rect", {
          x: (L + di * slot + slot * 0.1 + si * bw).toFixed(1),
          y: (H - B - h).toFixed(1),
          width: bw.toFixed(1),
          height: h.toFixed(1),
          fill: COLORS[si],
          "data-series": s.key,
          "data-date": d.date,
          "data-value": d[s.key],
        });
        rect.appendChild(svg("title", {}, d.date + " · " + s.label + ": " + d[s.key]));
        chart.appendChild(rect);
      });
      var every = Math.ceil(daily.length / 12);
      if (di % every === 0) {
        chart.appendChild(
          svg("text", { x: L + di * slot + slot / 2, y: H - 8, "text-anchor": "middle" }, d.date.slice(5))
        );
      }
    });
    box.appendChild(chart);
    var legend = $("daily-legend");
    legend.textContent = "";
    SERIES.forEach(function (s, si) {
      legend.appendChild(el("span", { class: "s" + si }, s.label));
    });
  }

  function renderReport(report) {
    var maxViews = Math.max.apply(null, [1].concat(report.topPages.map(function (p) { return p.views; })));
    fillRows(
      "top-pages",
      report.topPages.map(function (p) {
        return [{ text: p.page }, { text: fmtInt(p.views), num: true }, { bar: p.views / maxViews }];
      }),
      "No page views in this period",
      3
    );
    var maxErrors = Math.max.apply(null, [1].concat(report.errors.map(function (e) { return e.count; })));
    fillRows(
      "error-distribution",
      report.errors.map(function (e) {
        return [{ text: e.name }, { text: fmtInt(e.count), num: true }, { bar: e.count / maxErrors, err: true }];
      }),
      "No errors in this period",
      3
    );
    fillRows(
      "endpoints",
      report.endpoints.map(function (e) {
        return [
          { text: e.endpoint },
          { text: fmtInt(e.calls), num: true },
          { text: fmtInt(e.errors), num: true },
          { text: fmtMs(e.p50Ms), num: true },
          { text: fmtMs(e.p95Ms), num: true },
          { text: fmtMs(e.p99Ms), num: true },
          { text: fmtMs(e.avgMs), num: true },
        ];
      }),
      "No API calls in this period",
      7
    );
    fillRows(
      "deployments",
      report.deployments.map(function (d) {
        var total = d.events + d.errors;
        return [
          { text: d.deployment },
          { text: fmtInt(d.events), num: true },
          { text: fmtInt(d.errors), num: true },
          { text: total ? fmtPct((d.errors / total) * 100) : "–", num: true },
        ];
      }),
      "No events with a deployment in this period",
      4
    );
    renderDaily(report.daily);
  }

  function load() {
    var days = $("days").value;
    var main = $("dashboard");
    main.setAttribute("aria-busy", "true");
    document.body.removeAttribute("data-ready");
    $("status").textContent = "Loading…";
    Promise.all([getJson("/api/telemetry?days=" + days), getJson("/api/telemetry/report?days=" + days)])
      .then(function (results) {
        renderSummary(results[0].summary, results[0].period);
        renderReport(results[1]);
        $("status").textContent = "Updated " + new Date().toLocaleTimeString();
        main.setAttribute("aria-busy", "false");
        document.body.setAttribute("data-ready", "true");
      })
      .catch(function (error) {
        $("status").textContent = "Could not load the telemetry: " + error.message;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var wanted = new URLSearchParams(location.search).get("days");
    if (wanted && $("days").querySelector('option[value="' + CSS.escape(wanted) + '"]')) {
      $("days").value = wanted;
    }
    $("days").addEventListener("change", function () {
      history.replaceState(null, "", "?days=" + $("days").value);
      load();
    });
    load();
  });
})();
