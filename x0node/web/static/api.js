// Small fetch wrapper: JSON in and out, the CSRF header on every state change, errors as exceptions.
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.key = body && body.key;
    this.retryAfter = body && body.retry_after_s;
  }
}

export function setCsrf(token) { csrfToken = token; }

// The token for requests made without `request` (an upload with progress events).
export async function csrf() {
  if (csrfToken === null) await authState();
  return csrfToken;
}

export async function authState() {
  const st = await request("GET", "/api/v1/auth/state");
  csrfToken = st.csrf_token;
  return st;
}

export async function request(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    if (csrfToken === null) await authState();
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = csrfToken;
    opts.body = JSON.stringify(body === undefined ? {} : body);
  }
  const res = await fetch(path, opts);
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (res.status === 401 && !path.startsWith("/api/v1/auth/")) {
    location.assign("/login");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  if (data && typeof data.csrf_token === "string") csrfToken = data.csrf_token;
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const patch = (path, body) => request("PATCH", path, body);
export const put = (path, body) => request("PUT", path, body);
