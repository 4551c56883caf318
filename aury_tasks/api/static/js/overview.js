// #/ : queues with their depths, live workers, and the throughput and failure-rate charts.

import { get } from "./api.js";
import { failureRateChart, summary, throughputChart } from "./charts.js";
import { h, replace, table, timeCell } from "./dom.js";

const SPANS = [
  { span: 3600, points: 60, label: "hour" },
  { span: 86400, points: 96, label: "day" },
];

function queueLink(name, count, page = "tasks", extra = {}) {
  const search = new URLSearchParams({ queue: name, ...extra }).toString();
  return h("a", { href: `#/${page}?${search}` }, String(count));
}

function queuesTable(queues) {
  const rows = queues.map((q) => [
    h("a", { href: `#/tasks?${new URLSearchParams({ queue: q.queue_name })}` }, q.queue_name),
    String(q.pending), String(q.scheduled), String(q.running),
    q.failed ? queueLink(q.queue_name, q.failed, "tasks", { status: "failure" }) : "0",
    q.dead ? queueLink(q.queue_name, q.dead, "dead-letters") : "0",
    String(q.succeeded), String(q.workers),
  ]);
  return table(["Queue", ["Waiting", "num"], ["Delayed", "num"], ["Running", "num"], ["Failed", "num"],
    ["Dead", "num"], ["Succeeded", "num"], ["Workers", "num"]], rows, { empty: "No queue yet.", id: "queues" });
}

function workersTable(workers) {
  const rows = workers.map((w) => [h("span", { class: "mono" }, w.id), w.host, String(w.pid),
    w.queues.join(", "), timeCell(w.started_at), timeCell(w.last_seen)]);
  return table(["Worker", "Host", ["PID", "num"], "Queues", "Started", "Last seen"], rows,
    { empty: "No worker seen in the last 30 s.", id: "workers" });
}

function totals(queues, workers) {
  const sum = (name) => queues.reduce((total, q) => total + q[name], 0);
  const card = (label, value, kind = "") => h("div", { class: `card ${kind}` },
    h("div", { class: "card-value" }, String(value)), h("div", { class: "card-label" }, label));
  return h("div", { class: "cards", id: "totals" },
    card("waiting", sum("pending")), card("delayed", sum("scheduled")), card("running", sum("running")),
    card("failed", sum("failed"), sum("failed") ? "bad" : ""), card("dead", sum("dead"), sum("dead") ? "bad" : ""),
    card("workers", workers.length, workers.length ? "" : "bad"));
}

export async function renderOverview(main, ctx) {
  const numbers = h("section", {});
  const charts = h("section", { class: "charts", id: "charts" });
  replace(main, h("h1", {}, "Overview"), numbers, h("h2", {}, "Throughput and failures"), charts);

  async function refresh() {
    const [queues, workers, ...series] = await Promise.all([
      get("api/v1/queues"), get("api/v1/workers"),
      ...SPANS.map(({ span, points }) => get("api/v1/tasks/throughput", { span, points })),
    ]);
    if (!ctx.alive()) return;
    replace(numbers, totals(queues.items, workers.items), h("h2", {}, "Queues"), queuesTable(queues.items),
      h("h2", {}, "Workers"), workersTable(workers.items));
    replace(charts, SPANS.map(({ label }, i) => h("div", { class: "chart-box", id: `chart-${label}` },
      h("h3", {}, `Last ${label}`), summary(series[i].points),
      h("div", { class: "chart-pair" },
        h("figure", {}, throughputChart(series[i].points, label), h("figcaption", {}, "tasks ended ",
          h("span", { class: "key key-ok" }, "succeeded"), h("span", { class: "key key-bad" }, "failed or dead"),
          h("span", { class: "key key-other" }, "cancelled or expired"))),
        h("figure", {}, failureRateChart(series[i].points, label), h("figcaption", {}, "failure rate"))))));
  }

  await refresh();
  ctx.every(5, refresh);
}
