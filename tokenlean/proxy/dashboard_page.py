"""The dashboard's HTML: one page, inline CSS and script, inline SVG charts, no external resource.

``/*DATA*/null`` is replaced by the JSON of ``tokenlean.proxy.dashboard.dashboard_data``. Every
figure the page prints sits in an element with an ``id`` (``kpi-tokens-saved``, ``stage-cache-tokens``,
...), which is what the browser test reads back and compares with the ledger.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenlean savings</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f7f8fa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.sub{color:#667}.kpis{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.kpi{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;min-width:130px}
.kpi b{display:block;font-size:20px}.kpi span{color:#667;font-size:12px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #dde;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}.met{color:#177245}.unmet{color:#b3261e}
svg{background:#fff;border:1px solid #dde;border-radius:6px}
</style></head><body>
<h1>tokenlean: what the pipeline saved</h1>
<div class="sub" id="scope"></div>
<div class="kpis" id="kpis"></div>
<h2>Tokens and money saved per stage</h2><div id="stages"></div><svg id="stage-chart" width="640" height="10"></svg>
<h2>Over time (tokens spent, tokens saved)</h2><svg id="timeline" width="640" height="180"></svg>
<h2>Latency (ms)</h2><div id="latency"></div>
<h2>By model</h2><div id="models"></div>
<h2>Quality checks (end-to-end benchmark)</h2><div id="quality"></div>
<script>
const D = /*DATA*/null;
const fmt = (v, d) => (typeof v === "number" ? v.toLocaleString("en-US", {maximumFractionDigits: d ?? 0}) : String(v));
const usd = v => (Number(v) < 0 ? "-$" : "$") + Math.abs(Number(v)).toFixed(6);
function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || ["rect","text","line"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function table(rows, cols, idOf) {
  const t = el("table"); const head = el("tr");
  cols.forEach(c => head.appendChild(el("th", {}, c[1]))); t.appendChild(head);
  rows.forEach(r => { const tr = el("tr");
    cols.forEach(c => tr.appendChild(el("td", idOf ? {id: idOf(r, c[0])} : {}, c[2] ? c[2](r[c[0]]) : fmt(r[c[0]] ?? "", 3))));
    t.appendChild(tr); });
  return t;
}
function kpis(t) {
  const items = [["requests", "requests", t.requests], ["tokens-spent", "tokens spent", t.tokens_spent],
    ["tokens-saved", "tokens saved", t.tokens_saved], ["saved-pct", "saved %", t.saved_pct],
    ["cost", "money spent", usd(t.cost)], ["cost-saved", "money saved", usd(t.cost_saved)],
    ["cache-hit-rate", "cache hit rate", t.cache_hit_rate], ["estimated", "rows with estimates", t.estimated]];
  const box = document.getElementById("kpis");
  items.forEach(([id, label, v]) => { const k = el("div", {class: "kpi"});
    k.appendChild(el("b", {id: "kpi-" + id}, typeof v === "number" ? fmt(v, 4) : v));
    k.appendChild(el("span", {}, label)); box.appendChild(k); });
}
function bars(svg, rows, key, label) {
  const max = Math.max(1, ...rows.map(r => Math.abs(r[key])));
  svg.setAttribute("height", 24 * rows.length + 10);
  rows.forEach((r, i) => { const w = 420 * Math.abs(r[key]) / max;
    svg.appendChild(el("text", {x: 8, y: 22 * i + 20}, r[label]));
    svg.appendChild(el("rect", {x: 110, y: 22 * i + 8, width: w, height: 16, fill: r[key] < 0 ? "#d9825b" : "#4f7cc9"}));
    svg.appendChild(el("text", {x: 116 + w, y: 22 * i + 20}, fmt(r[key]))); });
}
function timeline(svg, series) {
  if (!series.length) return;
  const max = Math.max(1, ...series.map(s => s.tokens_spent + Math.max(0, s.tokens_saved)));
  const w = 600 / series.length;
  series.forEach((s, i) => { const hs = 150 * s.tokens_spent / max, hv = 150 * Math.max(0, s.tokens_saved) / max;
    svg.appendChild(el("rect", {x: 20 + i * w, y: 165 - hs, width: w - 2, height: hs, fill: "#8a94a6"}));
    svg.appendChild(el("rect", {x: 20 + i * w, y: 165 - hs - hv, width: w - 2, height: hv, fill: "#4f7cc9"})); });
}
function render() {
  document.getElementById("scope").textContent = "tenant: " + D.tenant + " \\u00b7 prices as of " + D.prices_date
    + " \\u00b7 figures marked estimated where the unoptimised cost is not measurable (see docs/ledger.md)";
  kpis(D.total);
  const stageId = (r, c) => "stage-" + r.key + "-" + (c === "tokens_saved" ? "tokens" : c === "cost_saved" ? "cost" : c);
  document.getElementById("stages").appendChild(table(D.by_stage,
    [["key", "stage"], ["requests", "requests acted"], ["tokens_saved", "tokens saved"], ["cost_saved", "money saved", usd],
     ["draft_accepted", "draft tokens accepted"], ["prefix_reused", "prompt tokens reused"]], stageId));
  bars(document.getElementById("stage-chart"), D.by_stage, "tokens_saved", "key");
  timeline(document.getElementById("timeline"), D.timeline);
  const lat = Object.entries(D.latency).map(([k, v]) => ({key: k, ...v}));
  document.getElementById("latency").appendChild(table(lat, [["key", "requests"], ["n", "n"], ["p50_ms", "p50"], ["p95_ms", "p95"]],
    (r, c) => "latency-" + r.key + "-" + c));
  document.getElementById("models").appendChild(table(D.by_model, [["key", "model"], ["requests", "requests"],
    ["tokens_spent", "spent"], ["tokens_saved", "saved"], ["cost_saved", "money saved", usd], ["p50_ms", "p50 ms"]]));
  const q = document.getElementById("quality");
  if (!D.benchmark) { q.textContent = "no benchmark result found (python -m bench.e2e writes one)"; return; }
  q.appendChild(table(D.benchmark.slices, [["slice", "slice"], ["quality_metric", "metric"], ["quality_off", "off"],
    ["quality_lean", "lean"], ["agreement", "agrees with off"], ["token_ratio", "tokens lean/off"], ["p50_ratio", "p50 lean/off"]]));
  const g = el("ul"); D.benchmark.goals.forEach(x => g.appendChild(el("li", {class: x.met ? "met" : "unmet"},
    x.name + ": " + fmt(x.achieved, 3) + " (target " + x.target + ") " + (x.met ? "met" : "not met")))); q.appendChild(g);
}
render();
document.body.setAttribute("data-rendered", "yes");
</script></body></html>
"""
