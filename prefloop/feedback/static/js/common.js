/* prefloop feedback UI: the helpers every page module shares (no build step; ES modules).
 * Every page talks to the REST API with the bearer token kept in localStorage.
 * Safety rule: text from data (prompts, responses, model and user names) only ever enters the
 * page through textContent / text nodes (el()). The one exception is HTML the server rendered
 * and sanitized (Markdown through markdown-it + nh3, Jinja2 fragments with autoescape), set
 * with setHTML() and nothing else. */

export const TOKEN_KEY = "prefloop_token";
export const LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

export const $ = (sel, root) => (root || document).querySelector(sel);
export const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

/** Create an element; string children become text nodes (never parsed as HTML). */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Put server-rendered, server-sanitized HTML into `node` (see the safety rule above). */
export function setHTML(node, html) {
  node.innerHTML = html;
  return node;
}

export function fmt(x, digits) {
  return x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits === undefined ? 3 : digits);
}

export function showMessage(text, kind) {
  const box = $("#message");
  if (!box) return;
  box.textContent = text;
  box.className = "message " + (kind || "info");
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = !text;
}

/** A fresh idempotency key: crypto.randomUUID where available (secure contexts), else random hex. */
export function newKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function goLogin() {
  localStorage.removeItem(TOKEN_KEY);
  location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
}

/** Call the API. opts: method, body (JSON), form (FormData), raw (text answer), noRedirect. */
export async function api(path, opts) {
  opts = opts || {};
  const headers = { Accept: opts.raw ? "*/*" : "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  let body;
  if (opts.form !== undefined) {
    body = opts.form; // the browser sets the multipart boundary
  } else if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  const res = await fetch(path, { method: opts.method || "GET", headers, body });
  const text = await res.text();
  let data = text;
  if (opts.raw !== true || !res.ok) {
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !opts.noRedirect) goLogin();
    let detail = data && data.detail !== undefined ? data.detail : res.status + " " + res.statusText;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(detail, res.status);
  }
  return data;
}

/** Fetch a file the API serves (a task's clip) with the bearer token -> a Blob (for a blob: URL). */
export async function apiBlob(path) {
  const headers = {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(path, { headers });
  if (!res.ok) throw new ApiError(`could not load ${path}: ${res.status} ${res.statusText}`, res.status);
  return res.blob();
}

/** Run `fn` again after network failures and 5xx answers (same request, so same idempotency key). */
export async function withRetry(fn, attempts) {
  attempts = attempts || 4;
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = !(err instanceof ApiError) || err.status >= 500;
      if (!retryable || i + 1 >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 250 * 2 ** i));
    }
  }
}

/** The logged-in user (and the header filled in), or null after sending the browser to /login. */
export async function requireLogin() {
  if (!localStorage.getItem(TOKEN_KEY)) {
    goLogin();
    return null;
  }
  const me = await api("/api/me");
  $("#user-name").textContent = me.name + (me.role === "admin" ? " (admin)" : "");
  const logout = $("#logout");
  logout.hidden = false;
  logout.addEventListener("click", async () => {
    // revoke the token on the server, then forget it here (even if the server is unreachable)
    await api("/api/logout", { method: "POST", noRedirect: true }).catch(() => {});
    localStorage.removeItem(TOKEN_KEY);
    location.href = "/login";
  });
  if (me.role === "admin") $("#nav").append(el("a", { href: "/admin", id: "nav-admin" }, "Admin"));
  return me;
}

export function campaignId() {
  const fromBody = document.body.dataset.campaign;
  if (fromBody) return Number(fromBody);
  const m = location.pathname.match(/\/(\d+)\/?$/);
  return m ? Number(m[1]) : null;
}

/** Save `text` as a file through a temporary object URL. */
export function saveText(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || "text/plain" }));
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Run a page's init(), showing any error in the message area. */
export function boot(init) {
  Promise.resolve()
    .then(init)
    .catch((err) => showMessage(err.message || String(err), "error"));
}
