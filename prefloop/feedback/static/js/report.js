/* /report/{cid}: the quality report, rendered on the server (GET /api/campaigns/{cid}/report.html). */
import { $, api, boot, campaignId, requireLogin, saveText, setHTML, showMessage } from "./common.js";

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  const cid = campaignId();
  $("#leaderboard-link").href = "/leaderboard/" + cid;
  $("#review-link").href = "/review/" + cid;
  const body = $("#report-body");
  try {
    const [campaign, html] = await Promise.all([api("/api/campaigns/" + cid), api(`/api/campaigns/${cid}/report.html`, { raw: true })]);
    $("#campaign-name").textContent = "· " + campaign.name;
    setHTML(body, html);
    body.removeAttribute("aria-busy");
  } catch (err) {
    showMessage(err.message, "error");
  }
  body.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-kind]");
    if (!button) return;
    const { kind, mode } = button.dataset;
    try {
      const text = await api(`/api/campaigns/${cid}/export?kind=${kind}&mode=${mode}`, { raw: true });
      saveText(text, `campaign${cid}-${kind}-${mode}.jsonl`, "application/x-ndjson");
    } catch (err) {
      showMessage(err.message, "error");
    }
  });
});
