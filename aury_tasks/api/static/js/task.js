// #/tasks/<id> : one task: its record, status history, live progress, arguments, result or
// traceback, and the cancel and retry buttons. Live through EventSource (the session cookie).

import { del, get, post, readOnlyTitle } from "./api.js";
import { actionButton, badge, fmtDuration, fmtTime, h, notify, pretty, replace, taskLink, timeCell } from "./dom.js";

const FINAL = new Set(["success", "failure", "cancelled", "expired", "dead"]);
const RETRYABLE = new Set(["failure", "dead", "cancelled", "expired"]);

function details(task) {
  const link = (id) => (id ? taskLink(id, id) : h("span", { class: "muted" }, "—"));
  const rows = [
    ["Id", h("span", { class: "mono" }, task.id)],
    ["Task", h("span", { class: "task-name" }, task.task_name)],
    ["Queue", task.queue_name],
    ["Status", badge(task.status)],
    ["Attempt", String(task.attempt)],
    ["Worker", h("span", { class: "mono" }, task.worker || "—")],
    ["Enqueued", timeCell(task.enqueued_at)],
    ["Due (eta)", timeCell(task.eta)],
    ["Expires", timeCell(task.expires_at)],
    ["Started", timeCell(task.started_at)],
    ["Finished", timeCell(task.finished_at)],
    ["Duration", fmtDuration(task.duration) || "—"],
    ["Retry of", link(task.retry_of)],
    ["Retried by", link(task.retried_by)],
    ["Workflow", task.workflow_id ? h("a", { href: `#/workflows/${encodeURIComponent(task.workflow_id)}`,
      class: "mono" }, task.workflow_id) : h("span", { class: "muted" }, "—")],
  ];
  if (task.reason) rows.push(["Reason", task.reason]);
  if (task.metadata && Object.keys(task.metadata).length) rows.push(["Metadata", h("pre", {}, pretty(task.metadata))]);
  return h("dl", { class: "details", id: "task-details" }, rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

function history(task, live) {
  const entries = [];
  if (task.enqueued_at) {
    entries.push({ at: task.enqueued_at, text: task.eta ? `enqueued, due ${fmtTime(task.eta)}` : "enqueued" });
  }
  for (const error of task.errors || []) {
    entries.push({ at: error.at, text: `attempt ${error.attempt} failed: ${error.type}: ${error.message}`, kind: "bad" });
  }
  if (task.started_at) entries.push({ at: task.started_at, text: `started (attempt ${task.attempt})` });
  if (task.finished_at) entries.push({ at: task.finished_at, text: `ended: ${task.status}`, kind: FINAL.has(task.status) && task.status !== "success" ? "bad" : "" });
  entries.sort((a, b) => a.at - b.at);
  return h("div", {},
    h("ol", { class: "history", id: "task-history" }, entries.map((e) =>
      h("li", { class: e.kind || null }, h("time", {}, fmtTime(e.at)), " ", e.text))),
    live.length ? [h("h3", {}, "Seen live"), h("ol", { class: "history", id: "task-live" },
      live.map((e) => h("li", {}, h("time", {}, fmtTime(e.at)), " ", e.text)))] : null);
}

function outcome(task) {
  if (task.redacted) {
    return h("p", { class: "muted", id: "task-outcome" }, "Arguments and result are hidden from the read-only token.");
  }
  const parts = [h("h3", {}, "Arguments"), h("pre", { id: "task-args" }, pretty(task.args)),
    h("h3", {}, "Keyword arguments"), h("pre", { id: "task-kwargs" }, pretty(task.kwargs))];
  if (task.status === "success") {
    parts.push(h("h3", {}, "Result"), h("pre", { id: "task-result" }, pretty(task.result)));
  } else if (task.error_type || task.traceback) {
    parts.push(h("h3", {}, "Error"), h("p", { class: "error", id: "task-error" }, `${task.error_type}: ${task.error_message}`));
    if (task.traceback) parts.push(h("h3", {}, "Traceback"), h("pre", { class: "traceback", id: "task-traceback" }, task.traceback));
  } else if (!FINAL.has(task.status)) {
    parts.push(h("p", { class: "muted", id: "task-outcome" }, "Not ended yet."));
  }
  return h("div", { id: "task-outcome-box" }, parts);
}

function progressView(box, progress) {
  if (!progress) {
    replace(box, h("p", { class: "muted" }, "No progress reported."));
    return;
  }
  const percent = Math.max(0, Math.min(100, Number(progress.percent) || 0));
  const step = progress.total_steps ? ` — step ${progress.step} of ${progress.total_steps}` : "";
  replace(box,
    h("progress", { id: "progress-bar", max: 100, value: percent, "aria-label": "progress" }, `${percent}%`),
    h("span", { class: "progress-text", id: "progress-text" }, `${percent.toFixed(0)}%${step}${progress.message ? ` — ${progress.message}` : ""}`));
}

export async function renderTask(main, ctx) {
  const [id] = ctx.params;
  let task = await get(`api/v1/tasks/${encodeURIComponent(id)}`);
  const live = [];
  const title = h("h1", {});
  const actions = h("div", { class: "actions" });
  const progressBox = h("div", { class: "progress", id: "task-progress" });
  const detailBox = h("div", {});
  const historyBox = h("div", {});
  const outcomeBox = h("div", {});
  replace(main, title, actions, h("h2", {}, "Progress"), progressBox,
    h("div", { class: "columns" }, h("section", {}, h("h2", {}, "Record"), detailBox),
      h("section", {}, h("h2", {}, "Status history"), historyBox)),
    h("h2", {}, "Arguments and outcome"), outcomeBox);

  const cancel = actionButton("Cancel", { id: "cancel-task", class: "danger" }, async () => {
    const answer = await del(`api/v1/tasks/${encodeURIComponent(id)}`);
    notify(answer.cancelled ? "Cancelled." : `Not cancelled: it had already ended (${answer.status}).`);
    show(await get(`api/v1/tasks/${encodeURIComponent(id)}`));
  }, { fail: ctx.fail });
  const retry = actionButton("Retry", { id: "retry-task" }, async () => {
    const again = await post(`api/v1/tasks/${encodeURIComponent(id)}/retry`);
    notify(`Sent again as ${again.id}.`, "info", { keep: true });
    location.hash = `#/tasks/${encodeURIComponent(again.id)}`;
  }, { fail: ctx.fail });

  function show(record) {
    task = record;
    replace(title, h("span", { class: "task-name" }, task.task_name), " ", badge(task.status));
    const readOnly = readOnlyTitle();
    cancel.disabled = Boolean(readOnly) || FINAL.has(task.status);
    retry.disabled = Boolean(readOnly) || !RETRYABLE.has(task.status);
    cancel.title = readOnly || (FINAL.has(task.status) ? "it has ended" : "cancel this task");
    retry.title = readOnly || (RETRYABLE.has(task.status) ? "send it again as a new task" : "only an ended task that did not succeed");
    replace(actions, cancel, retry);
    replace(detailBox, details(task));
    replace(historyBox, history(task, live));
    replace(outcomeBox, outcome(task));
    if (task.progress) progressView(progressBox, task.progress);
  }

  show(task);
  progressView(progressBox, task.progress);
  follow();

  function follow() {
    const source = new EventSource(`api/v1/tasks/${encodeURIComponent(id)}/events`);
    ctx.onLeave(() => source.close());
    let last = "";
    source.addEventListener("status", (event) => {
      const record = JSON.parse(event.data);
      const seen = `${record.status}/${record.attempt}`;
      if (seen !== last) live.push({ at: Date.now() / 1000, text: `status ${record.status} (attempt ${record.attempt})` });
      last = seen;
      if (ctx.alive()) show(record);
    });
    let reports = 0;
    source.addEventListener("progress", (event) => {
      progressBox.dataset.reports = String(++reports);  // how many arrived live
      if (ctx.alive()) progressView(progressBox, JSON.parse(event.data));
    });
    source.addEventListener("end", () => source.close());
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED || !ctx.alive() || FINAL.has(task.status)) return;
      // The stream was refused (e.g. the session ended): poll instead.
      ctx.every(2, async () => {
        if (!FINAL.has(task.status)) show(await get(`api/v1/tasks/${encodeURIComponent(id)}`));
      });
    });
  }
}
