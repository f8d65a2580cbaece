/* /review/{cid}: judgments by item / annotator / agreement, rendered on the server
 * (GET /api/campaigns/{cid}/review.html); accept / reject, comments, paging act through the API. */
import { $, $$, api, apiBlob, boot, campaignId, el, requireLogin, setHTML, showMessage } from "./common.js";

const view = { cid: null, offset: 0 };

function query() {
  const params = new URLSearchParams({ by: $("#review-by").value, offset: String(view.offset) });
  const max = $("#review-max-agreement").value;
  const who = $("#review-annotator").value.trim();
  if (max) params.set("max_agreement", max);
  if (who) params.set("annotator", who);
  return params;
}

/** Clip responses: fetched with the token (admins read any clip), shown from blob: URLs. */
function showClips(root) {
  for (const slot of $$(".clip-slot[data-media]", root)) {
    apiBlob(slot.dataset.media).then((blob) => {
      const url = URL.createObjectURL(blob);
      const video = blob.type.startsWith("video/");
      const node = video
        ? el("video", { class: "clip", src: url, loop: true, muted: true, autoplay: true, controls: true })
        : el("img", { class: "clip", src: url, alt: slot.textContent });
      slot.replaceWith(node);
    }).catch((err) => showMessage(err.message, "error"));
  }
}

async function load() {
  const params = query();
  history.replaceState(null, "", `${location.pathname}?${params}`);
  const body = $("#review-body");
  body.setAttribute("aria-busy", "true");
  try {
    setHTML(body, await api(`/api/campaigns/${view.cid}/review.html?${params}`, { raw: true }));
    showClips(body);
  } catch (err) {
    showMessage(err.message, "error");
  }
  body.removeAttribute("aria-busy");
}

async function onClick(ev) {
  const review = ev.target.closest("button[data-review]");
  const pager = ev.target.closest("button[data-offset]");
  try {
    if (review) {
      const value = review.dataset.review === "none" ? null : review.dataset.review;
      const res = await api(`/api/judgments/${review.dataset.judgment}/review`, { method: "POST", body: { review: value } });
      await load();
      showMessage(`Judgment ${res.judgment_id}: ${res.review || "not reviewed"}.`, "ok");
    } else if (pager) {
      view.offset = Number(pager.dataset.offset);
      await load();
    }
  } catch (err) {
    showMessage(err.message, "error");
  }
}

async function onSubmit(ev) {
  const form = ev.target.closest("form.comment-form");
  if (!form) return;
  ev.preventDefault();
  try {
    await api(`/api/items/${form.dataset.item}/comments`, { method: "POST", body: { text: form.elements.text.value } });
    await load();
    showMessage("Comment saved.", "ok");
  } catch (err) {
    showMessage(err.message, "error");
  }
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  view.cid = campaignId();
  $("#report-link").href = "/report/" + view.cid;
  $("#manage-link").href = "/admin/" + view.cid;
  const params = new URLSearchParams(location.search);
  if (params.get("by")) $("#review-by").value = params.get("by");
  if (params.get("max_agreement")) $("#review-max-agreement").value = params.get("max_agreement");
  if (params.get("annotator")) $("#review-annotator").value = params.get("annotator");
  view.offset = Number(params.get("offset") || 0);
  $("#review-controls").addEventListener("submit", (ev) => { ev.preventDefault(); view.offset = 0; load(); });
  $("#review-body").addEventListener("click", onClick);
  $("#review-body").addEventListener("submit", onSubmit);
  const campaign = await api("/api/campaigns/" + view.cid);
  $("#campaign-name").textContent = "· " + campaign.name;
  await load();
});
