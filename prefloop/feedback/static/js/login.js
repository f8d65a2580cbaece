/* /login: name + password, or a pasted token; then back to where the user was going. */
import { $, TOKEN_KEY, api, boot, showMessage } from "./common.js";

/** Where to go after logging in: `next` only if it is a path on this site, parsed the way the
 * browser will follow it (backslashes, tabs, "//host" resolve to another origin and are refused). */
export function safeNext(next) {
  if (!next) return "/";
  try {
    const url = new URL(next, location.origin);
    if (url.origin !== location.origin || !next.startsWith("/")) return "/";
    return url.pathname + url.search + url.hash;
  } catch (_) {
    return "/";
  }
}

boot(() => {
  const target = safeNext(new URLSearchParams(location.search).get("next"));
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showMessage("");
    try {
      const res = await api("/api/login", {
        method: "POST",
        noRedirect: true,
        body: { name: $("#login-name").value.trim(), password: $("#login-password").value },
      });
      localStorage.setItem(TOKEN_KEY, res.token);
      location.href = target;
    } catch (err) {
      showMessage(err.message, "error");
    }
  });
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("#login-token").value.trim());
    try {
      await api("/api/me", { noRedirect: true });
      location.href = target;
    } catch (err) {
      localStorage.removeItem(TOKEN_KEY);
      showMessage(err.message, "error");
    }
  });
});
