// The dashboard's entry: hash routes, the login form, the navigation bar.

import { ApiError, loadSession, logIn, logOut, session } from "./js/api.js";
import { clearNotices, h, notify, replace } from "./js/dom.js";
import { renderDeadLetters } from "./js/deadletters.js";
import { renderOverview } from "./js/overview.js";
import { renderSchedules } from "./js/schedules.js";
import { renderTask } from "./js/task.js";
import { renderTasks } from "./js/tasks.js";
import { renderWorkflow, renderWorkflows } from "./js/workflows.js";

const ROUTES = [
  [/^\/?$/, "overview", renderOverview],
  [/^\/tasks\/?$/, "tasks", renderTasks],
  [/^\/tasks\/([^/]+)$/, "tasks", renderTask],
  [/^\/workflows\/?$/, "workflows", renderWorkflows],
  [/^\/workflows\/([^/]+)$/, "workflows", renderWorkflow],
  [/^\/schedules\/?$/, "schedules", renderSchedules],
  [/^\/dead-letters\/?$/, "dead-letters", renderDeadLetters],
];

const main = document.getElementById("main");
let current = { serial: 0, leave: [] };

function leavePage() {
  for (const fn of current.leave) {
    try {
      fn();
    } catch (error) {
      console.error(error);
    }
  }
  current = { serial: current.serial + 1, leave: [] };
  window.scrollTo(0, 0);
  clearNotices();
}

/** What a page failed with: the login form for a 401, a message otherwise. */
export function showFailure(error) {
  if (error instanceof ApiError && error.status === 401) {
    showLogin("Your session has ended: log in again.");
    return;
  }
  console.error(error);
  notify(error instanceof ApiError ? `${error.message} (${error.status})` : String(error), "error");
}

async function route() {
  leavePage();
  if (!session.role) {
    showLogin();
    return;
  }
  const [path, search] = (location.hash.replace(/^#/, "") || "/").split("?");
  const match = ROUTES.map(([pattern, page, render]) => [path.match(pattern), page, render])
    .find(([found]) => found);
  if (!match) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/" }, "Overview")));
    return;
  }
  const [found, page, render] = match;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  const serial = current.serial;
  const ctx = {
    params: found.slice(1).map(decodeURIComponent),
    query: new URLSearchParams(search || ""),
    alive: () => current.serial === serial,
    onLeave: (fn) => current.leave.push(fn),
    fail: showFailure,
    /** Call fn every `seconds` while the page is shown (errors reported, not fatal). */
    every: (seconds, fn) => {
      const timer = setInterval(() => ctx.alive() && Promise.resolve(fn()).catch(showFailure), seconds * 1000);
      current.leave.push(() => clearInterval(timer));
    },
  };
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    await render(main, ctx);
  } catch (error) {
    if (!ctx.alive()) return;
    if (error instanceof ApiError && error.status === 404) {
      replace(main, h("h1", {}, "Not found"), h("p", {}, error.message));
      return;
    }
    replace(main, h("h1", {}, "Something went wrong"), h("p", { class: "error" }, String(error.message || error)));
    showFailure(error);
  }
}

function showHeader() {
  const logged = Boolean(session.role);
  document.getElementById("nav").hidden = !logged;
  document.getElementById("logout").hidden = !logged || !session.auth;
  const who = document.getElementById("who");
  who.textContent = !logged ? "" : !session.auth ? "no authentication (--insecure-no-auth)"
    : session.role === "full" ? "full access" : "read only";
  who.className = `who role-${session.role || "none"}`;
}

function showLogin(message) {
  leavePage();
  session.role = null;
  showHeader();
  const token = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password",
    required: true, autofocus: true, "aria-label": "API token" });
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const form = h("form", { class: "login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Paste TASK_API_TOKEN (full access) or TASK_API_READ_TOKEN (read only)."),
    h("label", { for: "token" }, "Token"), token,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await logIn(token.value);
      showHeader();
      route();
    } catch (failure) {
      error.textContent = failure instanceof ApiError && failure.status === 401
        ? "Wrong token." : `Cannot log in: ${failure.message}`;
      token.select();
    }
  });
  replace(main, form);
  token.focus();
}

async function start() {
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await logOut();
    } catch (error) {
      showFailure(error);
    }
    showLogin("Logged out.");
  });
  window.addEventListener("hashchange", route);
  try {
    await loadSession();
  } catch (error) {
    replace(main, h("h1", {}, "The API does not answer"), h("p", { class: "error" }, String(error.message)));
    return;
  }
  showHeader();
  route();
}

start();
