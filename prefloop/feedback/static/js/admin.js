/* /admin: create a campaign by uploading items files; the list of campaigns. */
import { $, api, boot, el, requireLogin, showMessage } from "./common.js";
import { readCampaignForm, tokenList } from "./forms.js";

async function listCampaigns() {
  const tbody = $("#campaign-table tbody");
  tbody.replaceChildren();
  for (const c of await api("/api/campaigns")) {
    tbody.append(el("tr", { dataset: { id: String(c.id) } },
      el("td", {}, String(c.id)),
      el("td", {}, el("a", { href: "/admin/" + c.id }, c.name)),
      el("td", { class: "small" }, c.feedback_types.join(", ")),
      el("td", { class: "num" }, String(c.n_items)),
      el("td", { class: "num" }, String(c.n_annotators)),
      el("td", { class: "num" }, String(c.overlap)),
      el("td", { class: "num" }, String(c.n_judgments)),
      el("td", { class: "small" }, el("a", { href: "/review/" + c.id }, "review"), " · ", el("a", { href: "/report/" + c.id }, "report"))));
  }
}

async function create(ev) {
  ev.preventDefault();
  const form = new FormData();
  form.append("campaign", JSON.stringify(readCampaignForm("create")));
  for (const file of $("#create-files").files) form.append("files", file, file.name);
  form.append("annotators", $("#create-annotators").value);
  $("#create-submit").disabled = true;
  try {
    const res = await api("/api/campaigns/upload", { method: "POST", form });
    const c = res.campaign;
    const box = $("#create-result");
    box.replaceChildren(
      el("p", { class: "message ok" }, `Created campaign ${c.id} "${c.name}": ${res.items_created} items, ${c.n_tasks} tasks. `,
        el("a", { href: "/admin/" + c.id, id: "created-link" }, "Open its settings →")),
      res.annotators.length ? tokenList(res.annotators) : null);
    box.hidden = false;
    showMessage("");
    $("#create-form").reset();
    await listCampaigns();
  } catch (err) {
    showMessage(err.message, "error");
  } finally {
    $("#create-submit").disabled = false;
  }
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  if (me.role !== "admin") {
    showMessage("This page is for admins.", "error");
    return;
  }
  $("#create-form").addEventListener("submit", create);
  await listCampaigns();
});
