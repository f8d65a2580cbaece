/* /leaderboard/{cid}: Bradley–Terry scores with bootstrap intervals and Elo, as a table and an SVG plot. */
import { $, api, boot, campaignId, el, fmt, requireLogin, showMessage } from "./common.js";

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderLeaderboard(board) {
  const elo = new Map(board.elo.map((e) => [e.model, e.rating]));
  const rows = board.bradley_terry;
  $("#lb-summary").textContent = `${board.n_comparisons} comparisons between ${rows.length} models.`;
  const tbody = $("#leaderboard-table tbody");
  tbody.replaceChildren();
  rows.forEach((r, i) => {
    tbody.append(el("tr", { dataset: { model: String(r.model) } },
      el("td", {}, String(i + 1)),
      el("td", { class: "model" }, String(r.model)),
      el("td", { class: "num strong" }, fmt(r.score, 0)),
      el("td", { class: "num" }, `${fmt(r.ci_low, 0)} – ${fmt(r.ci_high, 0)}`),
      el("td", { class: "num" }, `${r.wins} / ${r.losses} / ${r.ties}`),
      el("td", { class: "num" }, String(r.n)),
      el("td", { class: "num" }, fmt(elo.get(r.model), 0))));
  });
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No comparisons between different models yet.")));
  }
  drawPlot($("#plot"), rows, elo);
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/** A forest plot (SVG): one row per model, BT score with its CI, Elo as a cross. */
function drawPlot(box, rows, elo) {
  box.replaceChildren();
  if (!rows.length) return;
  const width = 760, rowH = 34, top = 26, left = 170, right = 30, bottom = 40;
  const height = top + rows.length * rowH + bottom;
  const values = rows.flatMap((r) => [r.ci_low, r.ci_high, elo.get(r.model)]).filter((v) => Number.isFinite(v));
  let lo = Math.min(...values), hi = Math.max(...values);
  const pad = Math.max(20, (hi - lo) * 0.08);
  lo -= pad; hi += pad;
  const x = (v) => left + ((v - lo) / (hi - lo)) * (width - left - right);
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "forest", role: "img",
    "aria-label": "Bradley–Terry scores with 95% intervals and Elo ratings" });
  const step = niceStep((hi - lo) / 6);
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) {
    plot.append(svg("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height - bottom, class: "grid" }));
    plot.append(svg("text", { x: x(t), y: height - bottom + 18, class: "tick", "text-anchor": "middle" }, String(Math.round(t))));
  }
  plot.append(svg("text", { x: (left + width - right) / 2, y: height - 6, class: "axis-label", "text-anchor": "middle" },
    "rating (Elo scale)"));
  if (lo < 1000 && hi > 1000) plot.append(svg("line", { x1: x(1000), x2: x(1000), y1: top - 6, y2: height - bottom, class: "baseline" }));
  rows.forEach((r, i) => {
    const y = top + i * rowH + rowH / 2;
    const g = svg("g", { class: "row", "data-model": String(r.model) });
    g.append(svg("text", { x: left - 12, y: y + 4, class: "label", "text-anchor": "end" }, String(r.model)));
    g.append(svg("line", { x1: x(r.ci_low), x2: x(r.ci_high), y1: y, y2: y, class: "ci" }));
    for (const v of [r.ci_low, r.ci_high]) g.append(svg("line", { x1: x(v), x2: x(v), y1: y - 6, y2: y + 6, class: "ci" }));
    g.append(svg("circle", { cx: x(r.score), cy: y, r: 6, class: "score" }));
    const e = elo.get(r.model);
    if (Number.isFinite(e)) {
      const s = 5, cx = x(e);
      g.append(svg("path", { d: `M${cx - s},${y - s}L${cx + s},${y + s}M${cx - s},${y + s}L${cx + s},${y - s}`, class: "elo" }));
    }
    g.append(svg("title", {}, `${r.model}: BT ${fmt(r.score, 0)} [${fmt(r.ci_low, 0)}, ${fmt(r.ci_high, 0)}], Elo ${fmt(e, 0)}`));
    plot.append(g);
  });
  const legend = svg("g", { class: "legend" });
  legend.append(svg("circle", { cx: left, cy: 10, r: 5, class: "score" }));
  legend.append(svg("text", { x: left + 10, y: 14 }, "Bradley–Terry (95% CI)"));
  legend.append(svg("path", { d: `M${left + 190},6L${left + 198},14M${left + 190},14L${left + 198},6`, class: "elo" }));
  legend.append(svg("text", { x: left + 206, y: 14 }, "Elo"));
  plot.append(legend);
  box.append(plot);
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  const cid = campaignId();
  $("#report-link").href = "/report/" + cid;
  try {
    const [campaign, board] = await Promise.all([api("/api/campaigns/" + cid), api(`/api/campaigns/${cid}/leaderboard`)]);
    $("#campaign-name").textContent = "· " + campaign.name;
    renderLeaderboard(board);
  } catch (err) {
    showMessage(err.message, "error");
  }
});
