/* /admin/{cid}: annotators and their tokens (issue, revoke), settings and guidelines, more items. */
import { $, api, boot, campaignId, el, requireLogin, setHTML, showMessage } from "./common.js";
import { fillCampaignForm, readCampaignForm, tokenList } from "./forms.js";

const cid = campaignId();

function showCampaign(c) {
  $("#campaign-name").textContent = "· " + c.name;
  $("#campaign-stats").textContent = `${c.n_items} items · ${c.n_annotators} annotators · overlap ${c.overlap} · ` +
    `${c.n_tasks} tasks · ${c.n_judgments} judgments`;
  setHTML($("#guidelines-preview"), c.instructions_html || "");
}

function showTokens(annotators, title) {
  const box = $("#token-result");
  box.replaceChildren(tokenList(annotators, title));
  box.hidden = false;
}

async function tokenDetails(name, box) {
  const tokens = await api(`/api/users/${encodeURIComponent(name)}/tokens`);
  box.replaceChildren(...tokens.map((t) => el("div", { class: "token-row", dataset: { token: String(t.id) } },
    el("span", { class: "small" }, `#${t.id} · issued ${t.created_at.slice(0, 16).replace("T", " ")}` +
      (t.expires_at ? ` · ${t.expired ? "expired" : "expires"} ${t.expires_at.slice(0, 16).replace("T", " ")}` : "")),
    el("button", { type: "button", class: "linklike revoke-one", onclick: () => revoke(name, t.id) }, "revoke"))));
  if (!tokens.length) box.append(el("span", { class: "muted small" }, "no live tokens"));
}

async function revoke(name, tokenId) {
  try {
    const path = `/api/users/${encodeURIComponent(name)}/tokens` + (tokenId ? `/${tokenId}` : "");
    const res = await api(path, { method: "DELETE" });
    showMessage(`Revoked ${res.revoked} token${res.revoked === 1 ? "" : "s"} of ${name}.`, "ok");
    await listAnnotators();
  } catch (err) {
    showMessage(err.message, "error");
  }
}

async function issue(name) {
  try {
    const res = await api(`/api/users/${encodeURIComponent(name)}/tokens`, { method: "POST" });
    showTokens([res], `New token for ${name} (shown once):`);
    await listAnnotators();
  } catch (err) {
    showMessage(err.message, "error");
  }
}

async function listAnnotators() {
  const tbody = $("#annotator-table tbody");
  const annotators = await api(`/api/campaigns/${cid}/annotators`);
  tbody.replaceChildren();
  for (const a of annotators) {
    const details = el("div", { class: "token-details" });
    tbody.append(el("tr", { dataset: { name: a.name } },
      el("td", {}, a.name),
      el("td", { class: "num" }, `${a.progress.done} / ${a.progress.total}`),
      el("td", { class: "num" }, String(a.progress.skipped)),
      el("td", {}, el("details", { ontoggle: (ev) => { if (ev.target.open) tokenDetails(a.name, details); } },
        el("summary", { class: "token-count" }, `${a.tokens} live`), details)),
      el("td", {}, el("div", { class: "button-row" },
        el("button", { type: "button", class: "pill issue-token", onclick: () => issue(a.name) }, "New token"),
        el("button", { type: "button", class: "pill revoke-all", disabled: !a.tokens, onclick: () => revoke(a.name, null) }, "Revoke all")))));
  }
  if (!annotators.length) tbody.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No annotators yet.")));
}

async function refreshCampaign() {
  const c = await api("/api/campaigns/" + cid);
  showCampaign(c);
  return c;
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  for (const [id, path] of [["#review-link", "/review/"], ["#report-link", "/report/"], ["#leaderboard-link", "/leaderboard/"]]) {
    $(id).href = path + cid;
  }
  fillCampaignForm("settings", await refreshCampaign());
  await listAnnotators();

  $("#settings-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      showCampaign(await api("/api/campaigns/" + cid, { method: "PATCH", body: readCampaignForm("settings") }));
      showMessage("Settings saved.", "ok");
      await listAnnotators();
    } catch (err) {
      showMessage(err.message, "error");
    }
  });
  $("#annotators-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const names = $("#annotators-names").value.replace(/,/g, " ").split(/\s+/).filter(Boolean);
    try {
      const res = await api(`/api/campaigns/${cid}/annotators`, { method: "POST", body: { names } });
      showTokens(res.annotators);
      $("#annotators-names").value = "";
      showMessage(`Added ${names.length} annotator${names.length === 1 ? "" : "s"}; ${res.tasks_created} new tasks.`, "ok");
      await Promise.all([listAnnotators(), refreshCampaign()]);
    } catch (err) {
      showMessage(err.message, "error");
    }
  });
  $("#items-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData();
    for (const file of $("#items-files").files) form.append("files", file, file.name);
    try {
      const res = await api(`/api/campaigns/${cid}/items/upload`, { method: "POST", form });
      showMessage(`Added ${res.created} items; ${res.tasks_created} new tasks.`, "ok");
      $("#items-form").reset();
      await Promise.all([listAnnotators(), refreshCampaign()]);
    } catch (err) {
      showMessage(err.message, "error");
    }
  });
});
