// #/dead-letters?queue=<name> : a queue's dead letters; requeue some or all, purge them.

import { canWrite, del, get, post, readOnlyTitle } from "./api.js";
import { actionButton, h, notify, replace, table, taskLink, timeCell } from "./dom.js";

const PAGE_SIZE = 50;

function argsText(letter) {
  if (letter.redacted) return h("span", { class: "muted" }, "hidden");
  const text = JSON.stringify({ args: letter.args, kwargs: letter.kwargs });
  return h("span", { class: "mono small", title: text }, text.length > 80 ? `${text.slice(0, 79)}…` : text);
}

export async function renderDeadLetters(main, ctx) {
  const queues = (await get("api/v1/queues")).items;
  if (!ctx.alive()) return;
  const chosen = ctx.query.get("queue") || (queues.find((q) => q.dead) || queues[0] || {}).queue_name || "";
  const page = Math.max(1, Number(ctx.query.get("page")) || 1);
  const picker = h("select", { id: "dlq-queue" }, queues.map((q) =>
    h("option", { value: q.queue_name, selected: q.queue_name === chosen }, `${q.queue_name} (${q.dead} dead)`)));
  picker.addEventListener("change", () => {
    location.hash = `#/dead-letters?${new URLSearchParams({ queue: picker.value })}`;
  });
  const body = h("div", {});
  replace(main, h("h1", {}, "Dead letters"),
    queues.length ? h("form", { class: "filters" }, h("label", {}, "Queue ", picker)) : null, body);
  if (!chosen) {
    replace(body, h("p", { class: "muted" }, "No queue yet."));
    return;
  }
  const path = `api/v1/queues/${encodeURIComponent(chosen)}/dead-letters`;
  const readOnly = !canWrite();

  async function refresh() {
    const found = await get(path, { page, page_size: PAGE_SIZE });
    if (!ctx.alive()) return;
    const boxes = [];
    const rows = found.items.map((letter) => {
      const box = h("input", { type: "checkbox", value: letter.task_id, disabled: readOnly,
        "aria-label": `select ${letter.task_id}` });
      boxes.push(box);
      return [box, taskLink(letter.task_id), h("span", { class: "task-name" }, letter.task_name), timeCell(letter.dead_at),
        h("span", { class: "error" }, letter.error_type ? `${letter.error_type}: ${letter.error_message}` : letter.error_message),
        argsText(letter)];
    });
    const act = (text, id, fn, cls) => actionButton(text,
      { id, class: cls, disabled: readOnly || !found.total, title: readOnlyTitle() }, fn,
      { after: refresh, fail: ctx.fail });
    const requeue = async (ids) => {
      const answer = await post(`${path}/requeue`, ids ? { task_ids: ids } : {});
      const count = Object.keys(answer.requeued).length;
      notify(`Requeued ${count} dead letter${count === 1 ? "" : "s"} as new tasks.`);
    };
    replace(body,
      h("p", { class: "muted", id: "dlq-count" }, `${found.total} dead letter${found.total === 1 ? "" : "s"} in ${chosen}`),
      h("div", { class: "actions" },
        act("Requeue selected", "requeue-selected", async () => {
          const ids = boxes.filter((b) => b.checked).map((b) => b.value);
          if (!ids.length) {
            notify("Select dead letters first.");
            return;
          }
          await requeue(ids);
        }),
        act("Requeue all", "requeue-all", () => requeue(null)),
        act("Purge all", "purge", async () => {
          if (!window.confirm(`Delete every dead letter of ${chosen}? They cannot be requeued afterwards.`)) return;
          const answer = await del(path);
          notify(`Purged ${answer.purged} dead letter${answer.purged === 1 ? "" : "s"}.`);
        }, "danger")),
      table(["", "Task id", "Task", "Dead since", "Error", "Arguments"], rows,
        { empty: "No dead letter in this queue.", id: "dead-letters" }),
      found.total > PAGE_SIZE ? h("nav", { class: "pager" },
        page > 1 ? h("a", { class: "button-link", href: `#/dead-letters?${new URLSearchParams({ queue: chosen, page: page - 1 })}` }, "‹ Newer") : null,
        page * PAGE_SIZE < found.total ? h("a", { class: "button-link", href: `#/dead-letters?${new URLSearchParams({ queue: chosen, page: page + 1 })}` }, "Older ›") : null) : null);
  }

  await refresh();
}
