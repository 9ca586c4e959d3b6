// Alarm workload as charts: bars drawn as SVG here (no chart library to fetch or ship).
"use strict";
(function () {
  const { t, $ } = window.Gatehouse;
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, content) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (content !== undefined) node.textContent = content;
    return node;
  }

  // bars: [{label, value}], every `labelEvery`-th label written under its bar
  function bars(target, data, labelEvery) {
    const width = 760, height = 220, pad = 28;
    const max = Math.max(1, ...data.map((d) => d.value));
    const w = (width - pad) / Math.max(1, data.length);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 24}`, role: "img", class: "bars" });
    svg.append(el("text", { x: 0, y: 12, class: "axis" }, String(max)));
    data.forEach((d, i) => {
      const h = (d.value / max) * (height - 20);
      const bar = el("rect", { x: pad + i * w + 1, y: height - h, width: Math.max(1, w - 2), height: h, class: "bar" });
      bar.append(el("title", {}, d.label + ": " + d.value));
      svg.append(bar);
      if (i % labelEvery === 0) svg.append(el("text", { x: pad + i * w, y: height + 16, class: "axis" }, d.label));
    });
    target.replaceChildren(svg);
  }

  fetch("/api/v1/alarms/stats", { credentials: "same-origin" }).then(async (r) => {
    if (r.status === 401) { window.location.href = "/login"; return; }
    const s = await r.json();
    const figures = [
      [t["stats.raised"], s.raised], [t["stats.avg"], s.per_10min],
      [t["stats.flood"], s.flood.time_in_flood_pct + "%"], [t["stats.slowest"], s.max_unacked_s],
      [t["stats.unacked"], s.unacked_now],
    ];
    $("figures").replaceChildren(...figures.flatMap(([k, v]) => [
      Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: String(v) }),
    ]));
    $("operators").replaceChildren(...s.per_operator.map((o) =>
      Object.assign(document.createElement("li"), { textContent: o.operator + ": " + o.acked })));
    bars($("chart-10min"), s.series_10min.map((p) => ({ label: p.at.slice(11, 16), value: p.raised })), 12);
    bars($("chart-ack"), Object.entries(s.time_to_ack).map(([band, n]) => ({ label: band, value: n })), 1);
    document.body.dataset.drawn = "1";
  });
})();
