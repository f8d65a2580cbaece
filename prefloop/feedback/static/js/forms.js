/* The campaign form shared by /admin (new campaign) and /admin/{cid} (settings): read it into the
 * body of POST /api/campaigns, or fill it from a campaign. And the box that shows new tokens once. */
import { $, $$, el } from "./common.js";

export function readCampaignForm(prefix) {
  return {
    name: $(`#${prefix}-name`).value.trim(),
    feedback_types: $$(`#${prefix}-types input:checked`).map((b) => b.value),
    overlap: Number($(`#${prefix}-overlap`).value),
    anonymous: $(`#${prefix}-anonymous`).checked,
    rating_scale: [Number($(`#${prefix}-rating-lo`).value), Number($(`#${prefix}-rating-hi`).value)],
    instructions: $(`#${prefix}-guidelines`).value,
  };
}

export function fillCampaignForm(prefix, c) {
  $(`#${prefix}-name`).value = c.name;
  $$(`#${prefix}-types input`).forEach((b) => { b.checked = c.feedback_types.includes(b.value); });
  $(`#${prefix}-overlap`).value = String(c.overlap);
  $(`#${prefix}-anonymous`).checked = c.anonymous;
  $(`#${prefix}-rating-lo`).value = String(c.rating_scale[0]);
  $(`#${prefix}-rating-hi`).value = String(c.rating_scale[1]);
  $(`#${prefix}-guidelines`).value = c.instructions;
}

/** New accounts' tokens, shown once: [{name, token}] (null tokens = existing accounts). */
export function tokenList(annotators, title) {
  const rows = annotators.map((a) => el("tr", { dataset: { name: a.name } },
    el("td", {}, a.name),
    el("td", {}, a.token ? el("code", { class: "token" }, a.token) : el("span", { class: "muted" }, "existing account; token unchanged"))));
  return el("div", {},
    el("p", { class: "small" }, title || "Tokens (shown once; annotators paste them on the login page):"),
    el("table", { class: "table tokens" }, el("tbody", {}, rows)));
}
