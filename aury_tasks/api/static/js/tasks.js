// #/tasks : every task, newest first, filtered by status, queue and name, a page at a time.

import { get } from "./api.js";
import { badge, fmtDuration, h, replace, table, taskLink, timeCell } from "./dom.js";

export const STATUSES = ["pending", "scheduled", "started", "retrying", "success", "failure", "cancelled",
  "expired", "dead"];

const FILTERS = ["status", "queue", "task", "page", "page_size"];

function filterForm(ctx, queues) {
  const value = (name) => ctx.query.get(name) || "";
  const status = h("select", { name: "status", id: "filter-status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((name) => h("option", { value: name, selected: value("status") === name }, name)));
  const queueNames = [...new Set([...queues.map((q) => q.queue_name), value("queue")].filter(Boolean))];
  const queue = h("select", { name: "queue", id: "filter-queue" }, h("option", { value: "" }, "any queue"),
    queueNames.map((name) => h("option", { value: name, selected: value("queue") === name }, name)));
  const task = h("input", { name: "task", id: "filter-task", placeholder: "task name", value: value("task") });
  const size = h("select", { name: "page_size", id: "filter-size" },
    ["25", "50", "100", "200"].map((n) => h("option", { value: n, selected: (value("page_size") || "50") === n }, `${n} a page`)));
  const form = h("form", { class: "filters", id: "task-filters" },
    h("label", {}, "Status ", status), h("label", {}, "Queue ", queue), h("label", {}, "Task ", task),
    h("label", {}, "Show ", size), h("button", { type: "submit" }, "Filter"),
    h("a", { href: "#/tasks", class: "button-link" }, "Clear"));
  const apply = () => {
    const params = new URLSearchParams();
    for (const field of [status, queue, task, size]) if (field.value) params.set(field.name, field.value.trim());
    location.hash = `#/tasks${params.toString() ? `?${params}` : ""}`;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  for (const field of [status, queue, size]) field.addEventListener("change", apply);
  return form;
}

function pageLink(ctx, page, text, enabled) {
  const params = new URLSearchParams(ctx.query);
  params.set("page", String(page));
  return enabled ? h("a", { href: `#/tasks?${params}`, class: "button-link" }, text)
    : h("span", { class: "button-link disabled" }, text);
}

export async function renderTasks(main, ctx) {
  const params = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name)]));
  const body = h("div", {});
  const queues = await get("api/v1/queues");
  replace(main, h("h1", {}, "Tasks"), filterForm(ctx, queues.items), body);

  async function refresh() {
    const found = await get("api/v1/tasks", params);
    if (!ctx.alive()) return;
    const rows = found.items.map((t) => [taskLink(t.id), h("span", { class: "task-name" }, t.task_name),
      t.queue_name, badge(t.status), String(t.attempt), timeCell(t.enqueued_at), fmtDuration(t.duration),
      h("span", { class: "mono small" }, t.worker)]);
    const page = found.page;
    replace(body,
      h("p", { class: "muted", id: "task-count" },
        `${found.total} task${found.total === 1 ? "" : "s"}; page ${page} of ${Math.max(found.pages, 1)}`),
      table(["Id", "Task", "Queue", "Status", ["Attempt", "num"], "Enqueued", ["Duration", "num"], "Worker"],
        rows, { empty: "No task matches.", id: "tasks" }),
      h("nav", { class: "pager" }, pageLink(ctx, page - 1, "‹ Newer", page > 1),
        pageLink(ctx, page + 1, "Older ›", page < found.pages)));
  }

  await refresh();
  ctx.every(5, refresh);
}
