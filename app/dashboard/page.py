"""The dashboard's one page: HTML, CSS and script inline, nothing fetched from elsewhere (it works offline).

It asks ``/api/sidecars`` every two seconds and draws each sidecar: its health, components with their
health, subscriptions, request rates and latencies (rates from the difference between two refreshes, with
a sparkline of the last two minutes), component calls, pub/sub counts and the last deliveries (drops,
which go to the dead-letter topic when one is set, stand out).
"""

from __future__ import annotations

__all__ = ("PAGE",)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Layotto dashboard</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --ok:#12805c;
          --bad:#c4320a; --warn:#b54708; --accent:#3d5afe; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg);
         color:var(--ink); }
  header { display:flex; align-items:baseline; gap:16px; padding:16px 24px; background:var(--card);
           border-bottom:1px solid var(--line); }
  header h1 { margin:0; font-size:18px; }
  header .muted { font-size:13px; }
  main { padding:16px 24px; display:grid; gap:16px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px; }
  .card h2 { margin:0 0 4px; font-size:16px; display:flex; gap:8px; align-items:center; }
  .grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:16px; margin-top:12px; }
  .grid > div { overflow-x:auto; min-width:0; }
  .grid > .wide { grid-column:span 2; }
  h3 { margin:0 0 6px; font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
  table { width:100%; border-collapse:collapse; font-size:13px; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); white-space:nowrap; }
  td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
  .muted { color:var(--muted); }
  .badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
  .UP, .success { background:#d1fadf; color:var(--ok); }
  .DOWN, .drop, .unreachable { background:#fee4e2; color:var(--bad); }
  .INIT, .retry { background:#fef0c7; color:var(--warn); }
  .empty { color:var(--muted); font-style:italic; }
  svg.spark { width:100%; height:48px; display:block; }
  svg.spark polyline { fill:none; stroke:var(--accent); stroke-width:1.5; }
  .stats { display:flex; gap:24px; margin:8px 0; }
  .stat b { display:block; font-size:20px; }
</style>
</head>
<body>
<header><h1>Layotto dashboard</h1><span class="muted" id="status">loading…</span></header>
<main id="sidecars"></main>
<script>
"use strict";
const REFRESH_MS = 2000, HISTORY = 60;
const history = new Map();  // pid -> {total, time, rates: []}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const fmt = (v, digits = 1) => v === null || v === undefined ? "\u2013" : Number(v).toFixed(digits);
const badge = (text) => el("span", {class: "badge " + text}, text);

function table(headers, rows, empty) {
  if (!rows.length) return el("p", {class: "empty"}, empty);
  const head = el("tr", {}, ...headers.map(([h, cls]) => el("th", cls ? {class: cls} : {}, h)));
  return el("table", {}, el("thead", {}, head),
            el("tbody", {}, ...rows.map(cells => el("tr", {}, ...cells.map(([v, cls]) =>
              el("td", cls ? {class: cls} : {}, v))))));
}

function sparkline(rates) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 48`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...rates);
  const points = rates.map((r, i) => `${i + HISTORY - rates.length},${46 - (r / top) * 44}`).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  return svg;
}

function rateOf(sidecar, now) {
  const total = sidecar.metrics ? sidecar.metrics.total_requests : 0;
  const seen = history.get(sidecar.pid) || {total, time: now, rates: []};
  const seconds = now - seen.time;
  if (seconds > 0) seen.rates = [...seen.rates, Math.max(0, (total - seen.total) / seconds)].slice(-HISTORY);
  seen.total = total; seen.time = now;
  history.set(sidecar.pid, seen);
  return seen.rates;
}

function card(sidecar, now) {
  const title = el("h2", {}, sidecar.app_id || "(no app id)",
                   badge(sidecar.reachable ? (sidecar.health || "INIT") : "unreachable"));
  const ports = `pid ${sidecar.pid} · HTTP ${sidecar.http_port}` +
    (sidecar.metrics_port ? ` · metrics ${sidecar.metrics_port}` : "") +
    (sidecar.app_port ? ` · app ${sidecar.app_port}` : "") + (sidecar.command ? ` · ${sidecar.command}` : "");
  const node = el("section", {class: "card", "data-app-id": sidecar.app_id}, title, el("div", {class: "muted"}, ports));
  if (!sidecar.reachable) { node.append(el("p", {class: "empty"}, sidecar.problem || "not answering")); return node; }
  const rates = rateOf(sidecar, now);
  const metrics = sidecar.metrics;
  const current = rates.length ? rates[rates.length - 1] : 0;
  const stats = el("div", {class: "stats"},
    el("div", {class: "stat"}, el("b", {}, fmt(current)), "requests/s"),
    el("div", {class: "stat"}, el("b", {}, metrics ? metrics.total_requests : "\u2013"), "requests"),
    el("div", {class: "stat"}, el("b", {}, (sidecar.components || []).length), "components"));
  const grid = el("div", {class: "grid"});
  grid.append(el("div", {}, el("h3", {}, "Components"),
    table([["Name"], ["Type"], ["Version"], ["Health"]],
          (sidecar.components || []).map(c => [[c.name], [c.type], [c.version], [badge(c.status)]]), "none loaded")));
  grid.append(el("div", {}, el("h3", {}, "Subscriptions"),
    table([["Pub/sub"], ["Topic"], ["Route"], ["Dead-letter topic"]],
          (sidecar.subscriptions || []).map(s => [[s.pubsubname], [s.topic],
            [(s.rules || []).map(r => r.path).join(", ")], [s.deadLetterTopic || "\u2013"]]), "no subscriptions")));
  if (metrics) {
    grid.append(el("div", {}, el("h3", {}, "Request rate (last 2 min)"), sparkline(rates), stats));
    grid.append(el("div", {class: "wide"}, el("h3", {}, "API requests"),
      table([["Method"], ["Path"], ["Count", "num"], ["Errors", "num"], ["Mean ms", "num"], ["p90 ms", "num"]],
            metrics.requests.map(r => [[r.method], [r.path || "(all)"], [r.count, "num"], [r.errors, "num"],
                                       [fmt(r.mean_ms), "num"], [fmt(r.p90_ms), "num"]]), "no requests yet")));
    grid.append(el("div", {}, el("h3", {}, "Component calls"),
      table([["Component"], ["Block"], ["Operation"], ["OK", "num"], ["Failed", "num"]],
            metrics.components.map(c => [[c.component], [c.block], [c.operation], [c.ok, "num"], [c.failed, "num"]]),
            "no component calls yet")));
    grid.append(el("div", {}, el("h3", {}, "Recent deliveries"),
      table([["Time"], ["Topic"], ["Route"], ["Status"], ["ms", "num"]],
            (sidecar.deliveries || []).slice(0, 15).map(d => [[new Date(d.time * 1000).toLocaleTimeString()],
              [d.topic], [d.path], [badge(d.status === "drop" ? "drop" : d.status)], [fmt(d.ms), "num"]]),
            "no deliveries yet")));
  } else {
    grid.append(el("p", {class: "empty"}, sidecar.metrics_problem || "metrics are off for this sidecar"));
  }
  node.append(grid);
  return node;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/sidecars", {cache: "no-store"});
    const data = await response.json();
    const main = document.getElementById("sidecars");
    const cards = data.sidecars.map(s => card(s, data.time));
    main.replaceChildren(...(cards.length ? cards : [el("p", {class: "empty"}, "No sidecar is running.")]));
    const updated = new Date(data.time * 1000).toLocaleTimeString();
    status.textContent = `${data.sidecars.length} sidecar(s) · updated ${updated}`;
  } catch (error) {
    status.textContent = "dashboard server not answering";
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
"""
