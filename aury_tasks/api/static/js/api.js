// The REST API, reached with relative URLs (the dashboard may be mounted under a prefix) and
// the session cookie; requests that change something carry the CSRF token.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = { role: null, auth: true, csrf: "" };

function csrfFromCookie() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "aum_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** Whether the session may change things (the read-only token may not). */
export function canWrite() {
  return session.role === "full";
}

/** The tooltip of a button the session may not use (the read-only token's), else null. */
export function readOnlyTitle() {
  return canWrite() ? null : "the read-only token cannot change anything";
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Call the API: `request("POST", "api/v1/tasks", {...})`; the parsed answer, or ApiError. */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = session.csrf || csrfFromCookie();
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(response.status, error ? error.code : `http_${response.status}`,
      error ? error.message : response.statusText);
  }
  return data;
}

export const get = (path, params) => request("GET", path + query(params));
export const post = (path, body = {}) => request("POST", path, body);
export const put = (path, body = {}) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

/** The current session, or null when not logged in. */
export async function loadSession() {
  try {
    const answer = await get("api/v1/session");
    Object.assign(session, { role: answer.role, auth: answer.auth, csrf: answer.csrf_token || csrfFromCookie() });
    return answer;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      Object.assign(session, { role: null, csrf: "" });
      return null;
    }
    throw error;
  }
}

export async function logIn(token) {
  const answer = await request("POST", "api/v1/session", { token });
  Object.assign(session, { role: answer.role, auth: answer.auth, csrf: answer.csrf_token });
  return answer;
}

export async function logOut() {
  await request("DELETE", "api/v1/session");
  Object.assign(session, { role: null, csrf: "" });
}
