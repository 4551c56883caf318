// #/schedules : scheduled jobs with their next and last run; pause, resume, run now, remove;
// a form to add one, its cron expression checked as it is typed, with the next fire times.

import { canWrite, del, get, post, readOnlyTitle } from "./api.js";
import { TIME_ZONE, actionButton, badge, fmtTime, h, notify, replace, table, taskLink, timeCell } from "./dom.js";

function lastRun(job) {
  if (!job.last_run) return h("span", { class: "muted" }, "never");
  return h("span", {}, timeCell(job.last_run.fired_at), " ", taskLink(job.last_run.task_id),
    job.last_status ? [" ", badge(job.last_status)] : null);
}

function jobActions(job, refresh, fail) {
  const readOnly = !canWrite();
  const name = encodeURIComponent(job.name);
  const act = (text, fn, cls) => actionButton(text,
    { class: cls, disabled: readOnly, dataset: { job: job.name }, title: readOnlyTitle() }, fn,
    { after: refresh, fail });
  return h("span", { class: "row-actions" },
    job.paused ? act("Resume", () => post(`api/v1/scheduled-tasks/${name}/resume`).then(() => notify(`Resumed ${job.name}.`)), "resume")
      : act("Pause", () => post(`api/v1/scheduled-tasks/${name}/pause`).then(() => notify(`Paused ${job.name}.`)), "pause"),
    act("Run now", async () => {
      const task = await post(`api/v1/scheduled-tasks/${name}/run`);
      notify(`Sent ${job.task} now: task ${task.id}.`);
    }, "run"),
    act("Remove", async () => {
      if (!window.confirm(`Remove the scheduled job ${job.name}?`)) return;
      await del(`api/v1/scheduled-tasks/${name}`);
      notify(`Removed ${job.name}.`);
    }, "danger remove"));
}

function cronChecker(expression, timezone, output) {
  let timer = null;
  let serial = 0;
  const check = async () => {
    const text = expression.value.trim();
    const mine = ++serial;
    if (!text) {
      replace(output);
      return;
    }
    try {
      const answer = await post("api/v1/scheduler/validate-cron",
        { expression: text, timezone: timezone.value.trim() || null, count: 5 });
      if (mine !== serial) return;
      expression.setCustomValidity(answer.valid ? "" : answer.reason);
      replace(output, answer.valid
        ? [h("p", { class: "ok" }, `Valid. Next fire times (shown in ${TIME_ZONE}):`),
          h("ol", { class: "fires", id: "next-fires" }, answer.next_fire_times.map((t) => h("li", {}, fmtTime(t))))]
        : h("p", { class: "error", id: "cron-error" }, `Invalid: ${answer.reason}`),
      (answer.warnings || []).map((w) => h("p", { class: "warning" }, w)));
    } catch (error) {
      if (mine === serial) replace(output, h("p", { class: "error", id: "cron-error" }, error.message));
    }
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  };
  expression.addEventListener("input", later);
  timezone.addEventListener("input", later);
  return check;
}

function parseJson(text, fallback, what) {
  if (!text.trim()) return fallback;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not JSON`);
  }
}

function addForm(taskNames, refresh, fail) {
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const name = h("input", { id: "job-name", name: "name", required: true, placeholder: "nightly-report" });
  const task = h("input", { id: "job-task", name: "task", required: true, list: "task-names", placeholder: "task name" });
  const kind = h("select", { id: "job-kind", name: "kind" }, h("option", { value: "cron" }, "cron"),
    h("option", { value: "interval" }, "every N seconds"));
  const cron = h("input", { id: "job-cron", name: "cron", placeholder: "*/5 * * * *", class: "mono" });
  const interval = h("input", { id: "job-interval", name: "interval", type: "number", min: 1, step: "any", placeholder: "60" });
  const timezone = h("input", { id: "job-timezone", name: "timezone", placeholder: "UTC" });
  const args = h("input", { id: "job-args", name: "args", placeholder: "[1, 2]", class: "mono" });
  const kwargs = h("input", { id: "job-kwargs", name: "kwargs", placeholder: '{"key": "value"}', class: "mono" });
  const paused = h("input", { id: "job-paused", name: "paused", type: "checkbox" });
  const output = h("div", { id: "cron-check", class: "cron-check" });
  const cronRow = field("Cron", cron);
  const intervalRow = field("Every (seconds)", interval);
  intervalRow.hidden = true;
  const check = cronChecker(cron, timezone, output);
  kind.addEventListener("change", () => {
    cronRow.hidden = kind.value !== "cron";
    intervalRow.hidden = kind.value === "cron";
    output.hidden = kind.value !== "cron";
  });
  const form = h("form", { class: "add-job", id: "add-job" },
    h("datalist", { id: "task-names" }, taskNames.map((n) => h("option", { value: n }))),
    field("Name", name), field("Task", task), field("Trigger", kind), cronRow, intervalRow,
    field("Time zone", timezone), field("Arguments (JSON list)", args), field("Keyword arguments (JSON)", kwargs),
    h("label", { class: "check" }, paused, " add paused"),
    output, h("button", { type: "submit", class: "primary" }, "Add job"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = { name: name.value.trim(), task: task.value.trim(), paused: paused.checked,
        args: parseJson(args.value, [], "Arguments"), kwargs: parseJson(kwargs.value, {}, "Keyword arguments"),
        timezone: timezone.value.trim() || null };
      if (kind.value === "cron") body.cron = cron.value.trim();
      else body.interval = Number(interval.value);
      const job = await post("api/v1/scheduled-tasks", body);
      notify(`Added ${job.name}: ${job.trigger_text}.`);
      form.reset();
      check();
      await refresh();
    } catch (error) {
      fail(error);
    }
  });
  return form;
}

export async function renderSchedules(main, ctx) {
  const status = h("p", { class: "muted", id: "scheduler-status" });
  const list = h("div", {});
  const names = new Set((await get("api/v1/task-names")).items.map((t) => t.name));
  if (!ctx.alive()) return;

  async function refresh() {
    const [jobs, scheduler] = await Promise.all([get("api/v1/scheduled-tasks"), get("api/v1/scheduler/status")]);
    if (!ctx.alive()) return;
    status.textContent = `${scheduler.jobs} job${scheduler.jobs === 1 ? "" : "s"}, ${scheduler.paused} paused; ` +
      (scheduler.leader ? `leading scheduler: ${scheduler.leader}` : "no scheduler is running (jobs do not fire)");
    const rows = jobs.items.map((job) => [
      h("span", { class: "job-name" }, job.name), h("span", { class: "task-name" }, job.task),
      h("span", { class: "mono small" }, job.trigger_text),
      job.paused ? h("span", { class: "badge status-paused" }, "paused") : h("span", { class: "badge status-active" }, "active"),
      timeCell(job.next_run), lastRun(job), jobActions(job, refresh, ctx.fail)]);
    replace(list, table(["Name", "Task", "Trigger", "State", "Next run", "Last run", ""], rows,
      { empty: "No scheduled job.", id: "jobs" }));
  }

  await refresh();
  replace(main, h("h1", {}, "Schedules"), status, list,
    canWrite() ? [h("h2", {}, "Add a job"), addForm([...names].sort(), refresh, ctx.fail)]
      : h("p", { class: "muted" }, "The read-only token cannot add jobs."));
  ctx.every(10, refresh);
}
