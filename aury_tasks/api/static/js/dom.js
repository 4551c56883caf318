// Building the page without innerHTML: every string becomes a text node, so data from users
// (task arguments, error messages) is never parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (["value", "checked", "disabled", "selected", "hidden"].includes(name)) {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", {href: "#/"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace every child of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return build(node, {}, children);
}

const pad = (n) => String(n).padStart(2, "0");

/** UNIX seconds as local "YYYY-MM-DD HH:MM:SS" ("" for none). */
export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined || seconds === "") return "";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The browser's time zone, in which every moment is shown. */
export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

/** A time element showing the moment, with the relative time as its tooltip. */
export function timeCell(seconds) {
  if (!seconds) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: new Date(seconds * 1000).toISOString(), title: fmtAgo(seconds) },
    fmtTime(seconds));
}

/** "3 min ago" / "in 2 h". */
export function fmtAgo(seconds) {
  const delta = seconds - Date.now() / 1000;
  const size = Math.abs(delta);
  const text = size < 60 ? `${Math.round(size)} s` : size < 3600 ? `${Math.round(size / 60)} min`
    : size < 86400 ? `${(size / 3600).toFixed(1)} h` : `${(size / 86400).toFixed(1)} d`;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/** Seconds as "12 ms", "1.25 s", "3 min 4 s". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** A status as a coloured badge. */
export function badge(status) {
  return h("span", { class: `badge status-${status || "unknown"}` }, status || "unknown");
}

/** The first characters of an id, the whole id as the tooltip. */
export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

/** A link to a task's page. */
export function taskLink(id, text) {
  return h("a", { href: `#/tasks/${encodeURIComponent(id)}`, title: id, class: "mono" }, text || shortId(id));
}

/** A button that runs `action` when clicked, then `after` (a refresh, say); an error goes to `fail`. */
export function actionButton(text, attrs, action, { after, fail }) {
  const button = h("button", { type: "button", ...attrs }, text);
  button.addEventListener("click", async () => {
    try {
      await action();
      if (after) await after();
    } catch (error) {
      fail(error);
    }
  });
  return button;
}

/** JSON, indented, for a <pre>. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A table: headers (a string, or [text, "num"] for a right-aligned column) and rows of cells. */
export function table(headers, rows, { empty = "Nothing to show.", id } = {}) {
  const numeric = headers.map((head) => Array.isArray(head) && head[1] === "num");
  return h("table", { class: "grid", id },
    h("thead", {}, h("tr", {}, headers.map((head, i) =>
      h("th", { class: numeric[i] ? "num" : null, scope: "col" }, Array.isArray(head) ? head[0] : head)))),
    h("tbody", {}, rows.length ? rows.map((row) => h("tr", {}, row.map((cell, i) =>
      h("td", { class: numeric[i] ? "num" : null }, cell))))
      : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, empty))));
}

/** Show a message for a few seconds (`keep`: past the next change of page, which it is about). */
export function notify(text, kind = "info", { keep = false } = {}) {
  const box = document.getElementById("notice");
  const item = h("div", { class: `note note-${kind}`, dataset: { keep: keep ? "1" : "" } }, text);
  item.addEventListener("click", () => item.remove());
  box.append(item);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 5000);
}

/** Drop the messages of the page left, but those kept for the page it goes to. */
export function clearNotices() {
  for (const item of [...document.getElementById("notice").children]) {
    if (item.dataset.keep) item.dataset.keep = "";
    else item.remove();
  }
}
