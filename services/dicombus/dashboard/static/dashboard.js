// The dicombus dashboard: reads the JSON API every few seconds and draws it.
// Charts are uPlot (shipped next to this file); nothing is loaded from elsewhere.
"use strict";

const REFRESH_MS = 3000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
// The per-minute series of an edge: API field -> chart title and unit.
const CHARTS = [
  ["associations_per_minute", "Associations per minute, by calling AE and result", "assoc/min"],
  ["instances_per_minute", "Instances per minute, by modality", "instances/min"],
  ["megabytes_per_minute", "Megabytes received per minute, by modality", "MB/min"],
];

// Exposed for the end-to-end tests and for whoever opens the console.
window.dicombusDashboard = { charts: {}, refreshes: 0 };

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

function status(value) {
  if (value === null || value === undefined) return "–";
  return "0x" + value.toString(16).toUpperCase().padStart(4, "0");
}

function sum(values) {
  return values.reduce((total, value) => total + value, 0);
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${url}: HTTP ${response.status}`);
  return body;
}

function chartFor(holder, key, title, unit, minutes, series) {
  const names = Object.keys(series).sort();
  const data = [minutes, ...names.map((name) => series[name])];
  const charts = window.dicombusDashboard.charts;
  const edge = holder.dataset.edge;
  charts[edge] = charts[edge] || {};
  const existing = charts[edge][key];
  const sameSeries = existing && existing.series.length === names.length + 1
    && names.every((name, i) => existing.series[i + 1].label === name);
  if (sameSeries) {
    existing.setData(data);
  } else {
    if (existing) existing.destroy();
    holder.replaceChildren(element("h4", {}, title));
    charts[edge][key] = new uPlot({
      width: 420,
      height: 200,
      series: [
        {},
        ...names.map((name, i) => ({
          label: name, stroke: COLORS[i % COLORS.length], width: 2,
          value: (u, v) => (v === null ? "–" : `${+v.toFixed(3)} ${unit}`),
        })),
      ],
      axes: [{}, { label: unit, size: 60 }],
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    }, data, holder);
  }
  holder.dataset.total = String(sum(names.map((name) => sum(series[name]))));
}

function renderEdges(document_) {
  const edges = document.getElementById("edges");
  const seen = new Set();
  for (const edge of document_.edges) {
    seen.add(edge.edge);
    let card = edges.querySelector(`.edge[data-edge="${CSS.escape(edge.edge)}"]`);
    if (!card) {
      card = element("div", { class: "edge", "data-edge": edge.edge });
      card.append(element("h3"), element("div", { class: "figures" }),
        element("div", { class: "charts" }));
      for (const [key] of CHARTS) {
        card.lastChild.append(element("div", { class: "chart", "data-chart": key,
          "data-edge": edge.edge }));
      }
      edges.append(card);
    }
    const state = edge.up ? element("span", { class: "up" }, "UP")
      : element("span", { class: "down" }, "DOWN");
    card.querySelector("h3").replaceChildren(
      `${edge.edge} (${edge.ae_title || "?"} at ${edge.address || "?"}): `, state);
    const latency = edge.cstore_latency_seconds;
    const figures = [
      ["last beat", edge.heartbeat_age_seconds === null ? "–" : seconds(edge.heartbeat_age_seconds) + " ago"],
      ["outbox", `${edge.outbox_messages ?? "–"} messages`],
      ["publisher lag", seconds(edge.publisher_lag_seconds)],
      ["C-STORE latency", latency.count
        ? `p50 ${seconds(latency.p50)}, p95 ${seconds(latency.p95)}, p99 ${seconds(latency.p99)} (${latency.count} timed)`
        : "– (needs EVT_DIMSE_RECV)"],
    ];
    card.querySelector(".figures").replaceChildren(
      ...figures.map(([name, value]) => element("span", {}, `${name}: ${value}`)));
    for (const [key, title, unit] of CHARTS) {
      const holder = card.querySelector(`.chart[data-chart="${key}"]`);
      chartFor(holder, key, title, unit, document_.minutes, edge[key]);
    }
  }
  for (const card of edges.querySelectorAll(".edge")) {
    if (!seen.has(card.dataset.edge)) card.remove();
  }
  if (!document_.edges.length) edges.replaceChildren("No edge has reported yet.");
}

function row(cells, attributes = {}) {
  return element("tr", attributes, ...cells.map((cell) =>
    (cell instanceof Node ? element("td", {}, cell) : element("td", {}, String(cell)))));
}

function renderQueues(document_) {
  document.querySelector("#queues tbody").replaceChildren(...document_.queues.map((q) =>
    row([q.name, q.messages, seconds(q.oldest_age_seconds), q.workers.join(", ") || "none"],
      { "data-queue": q.name })));
  const dead = Object.entries(document_.dead_letters);
  document.getElementById("task-dead-letters").textContent = dead.length
    ? "Task dead letters: " + dead.map(([task, n]) => `${task} ${n}`).join(", ")
    : "No task dead letters.";
}

function renderRouting(document_) {
  document.getElementById("routing-note").textContent = document_.note || "";
  document.querySelector("#destinations tbody").replaceChildren(...document_.destinations.map(
    (d) => row([d.name, element("span", { class: `breaker-${d.breaker}` }, d.breaker),
      d.deliveries.waiting, d.deliveries.sending, d.deliveries.acknowledged, d.deliveries.dead])));
  document.querySelector("#dead-letters tbody").replaceChildren(...document_.dead_letters.map(
    (d) => {
      const button = element("button", { class: "replay" }, "replay");
      button.addEventListener("click", () => replay(d, button));
      return row([d.destination, d.sop_instance_uid, status(d.status), d.reason || "–",
        d.attempts, button], { "data-uid": d.sop_instance_uid });
    }));
}

async function replay(deadLetter, button) {
  button.disabled = true;
  try {
    await getJSON("/api/routing/retry", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ uids: [deadLetter.sop_instance_uid],
        destination: deadLetter.destination }),
    });
    renderRouting(await getJSON("/api/routing"));
  } catch (error) {
    button.disabled = false;
    alert(`replay failed: ${error.message}`);
  }
}

function eventQuery() {
  const form = new FormData(document.getElementById("event-filter"));
  const query = new URLSearchParams();
  for (const [name, value] of form.entries()) if (value) query.set(name, value);
  return query.toString();
}

async function refreshEvents() {
  const document_ = await getJSON(`/api/events?${eventQuery()}`);
  const open = new Set([...document.querySelectorAll("#events tr.expanded")]
    .map((tr) => tr.dataset.id));
  const rows = [];
  for (const event of document_.events) {
    const id = event.cloudevent.id;
    const tr = row([event.time, event.type, event.edge, event.calling_ae_title ?? "–",
      event.called_ae_title ?? "–", status(event.status)], { class: "event", "data-id": id });
    const detail = element("tr", { class: "cloudevent", hidden: "" },
      element("td", { colspan: "6" },
        element("pre", { class: "cloudevent" }, JSON.stringify(event.cloudevent, null, 2))));
    tr.addEventListener("click", () => {
      detail.hidden = !detail.hidden;
      tr.classList.toggle("expanded", !detail.hidden);
    });
    if (open.has(id)) { detail.hidden = false; tr.classList.add("expanded"); }
    rows.push(tr, detail);
  }
  document.querySelector("#events tbody").replaceChildren(...rows);
}

async function refresh() {
  try {
    const [edges, queues, routing] = await Promise.all(
      ["/api/edges", "/api/queues", "/api/routing"].map((url) => getJSON(url)));
    renderEdges(edges);
    renderQueues(queues);
    renderRouting(routing);
    await refreshEvents();
    window.dicombusDashboard.refreshes += 1;
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("updated").textContent = `cannot refresh: ${error.message}`;
  }
}

document.getElementById("event-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  refreshEvents();
});
refresh();
setInterval(refresh, REFRESH_MS);
