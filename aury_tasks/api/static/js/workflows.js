// #/workflows : open a workflow by id, or one of the recent tasks' workflows.
// #/workflows/<id> : the tree of its steps, each task with its status, refreshed until it ends.

import { get } from "./api.js";
import { badge, fmtDuration, h, replace, taskLink, timeCell } from "./dom.js";

const FINAL = new Set(["success", "failure", "cancelled", "expired", "dead"]);

export async function renderWorkflows(main, ctx) {
  const input = h("input", { id: "workflow-id", name: "id", placeholder: "workflow id", required: true, size: 40 });
  const form = h("form", { class: "filters", id: "workflow-open" }, h("label", {}, "Workflow ", input),
    h("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/workflows/${encodeURIComponent(input.value.trim())}`;
  });
  const recent = await get("api/v1/tasks", { page_size: 500 });
  if (!ctx.alive()) return;
  const seen = new Map();
  for (const task of recent.items) {
    if (task.workflow_id && !seen.has(task.workflow_id)) seen.set(task.workflow_id, task);
  }
  const items = [...seen.entries()].map(([id, task]) => h("li", {},
    h("a", { href: `#/workflows/${encodeURIComponent(id)}`, class: "mono" }, id), " ",
    h("span", { class: "muted" }, "a step: "), h("span", { class: "task-name" }, task.task_name), " ",
    timeCell(task.enqueued_at)));
  replace(main, h("h1", {}, "Workflows"), form, h("h2", {}, "Recent workflows"),
    items.length ? h("ul", { class: "plain", id: "recent-workflows" }, items)
      : h("p", { class: "muted" }, "No step of a workflow among the last 500 tasks."));
}

function node(step) {
  if (step.kind === "task") {
    return h("li", { class: `node node-task status-line-${step.status}` },
      badge(step.status), " ", taskLink(step.id, step.task_name || step.id), " ",
      step.attempt > 1 ? h("span", { class: "muted" }, `attempt ${step.attempt} `) : null,
      step.duration !== null && step.duration !== undefined ? h("span", { class: "muted" }, fmtDuration(step.duration)) : null,
      step.error ? h("div", { class: "error small" }, step.error) : null);
  }
  return h("li", { class: `node node-${step.kind}` },
    h("span", { class: "kind" }, step.kind), " ", h("span", { class: "summary" }, step.status),
    h("ul", { class: "tree" }, (step.children || []).map(node)));
}

export async function renderWorkflow(main, ctx) {
  const [id] = ctx.params;
  const body = h("div", { id: "workflow" });
  replace(main, h("h1", {}, "Workflow ", h("span", { class: "mono" }, id)), body);

  async function refresh() {
    const tree = await get(`api/v1/workflows/${encodeURIComponent(id)}`);
    if (!ctx.alive()) return tree;
    replace(body,
      h("p", {}, h("span", { class: "kind" }, tree.kind), " ", badge(tree.status),
        tree.error ? h("span", { class: "error" }, ` ${tree.error}`) : null),
      h("ul", { class: "tree root", id: "workflow-tree" }, node(tree.root)));
    return tree;
  }

  const tree = await refresh();
  if (!FINAL.has(tree.status)) {
    let done = false;
    ctx.every(2, async () => {
      if (!done) done = FINAL.has((await refresh()).status);
    });
  }
}
