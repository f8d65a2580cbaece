/* /: the campaigns of the logged-in user (admins: all, with counts and admin links). */
import { $, api, boot, el, requireLogin } from "./common.js";

function progressLine(p) {
  const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
  const bar = el("div", { class: "progress-bar" });
  bar.style.width = `${pct}%`; // through CSSOM: a style attribute would need 'unsafe-inline' in the CSP
  return el("div", { class: "progress-inline" },
    el("span", { class: "small" }, `${p.done} / ${p.total} done`),
    el("div", { class: "progress-track" }, bar));
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  const box = $("#campaigns");
  const campaigns = await api("/api/campaigns");
  box.removeAttribute("aria-busy");
  const admin = me.role === "admin";
  if (admin) $("#index-hint").textContent = "All campaigns; annotate the ones you are part of. New campaigns: Admin.";
  if (!campaigns.length) {
    box.append(el("p", { class: "muted" }, admin ? "No campaigns yet: create one under Admin." : "No campaigns for you yet. An admin adds you to one."));
    return;
  }
  for (const c of campaigns) {
    const p = c.progress;
    const links = el("div", { class: "button-row" });
    if (p) links.append(el("a", { class: "button primary", href: "/annotate/" + c.id }, p.total - p.done ? "Annotate" : "Review"));
    if (admin) {
      for (const [href, text] of [["/leaderboard/", "Leaderboard"], ["/report/", "Report"], ["/review/", "Review judgments"], ["/admin/", "Settings"]]) {
        links.append(el("a", { class: "button", href: href + c.id }, text));
      }
    }
    const stats = admin && c.n_items !== undefined
      ? el("p", { class: "muted small" }, `${c.n_items} items · ${c.n_annotators} annotators · overlap ${c.overlap} · ${c.n_judgments} judgments`)
      : null;
    box.append(el("article", { class: "card campaign", dataset: { id: String(c.id) } },
      el("h2", {}, c.name),
      el("div", { class: "chips" }, c.feedback_types.map((t) => el("span", { class: "chip" }, t)),
        c.anonymous ? el("span", { class: "chip chip-dim" }, "anonymous") : null),
      p ? progressLine(p) : null,
      stats,
      links));
  }
});
