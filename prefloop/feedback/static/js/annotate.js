/* /annotate/{cid}: one task at a time - rank / compare / rate / thumbs / critique / edit, all by
 * keyboard or mouse; submit, skip, undo, "can't judge"; the next task loads without a reload. */
import { $, $$, LABELS, api, apiBlob, boot, campaignId, el, newKey, requireLogin, setHTML, showMessage, withRetry } from "./common.js";

const STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better"];
const STRENGTH_KEYS = { q: 0, w: 1, e: 2, r: 3 };
export const RANK_WAIT_MS = 800;

/** Typing ranks with digit keys. Below 10 responses a digit is a rank at once. From 10 on, a
 * digit that can begin a two-digit rank (1 when there are 10-19 responses, 1 or 2 for 20-29, ...)
 * waits RANK_WAIT_MS for a second digit: "1" "0" is rank 10, "1" "2" rank 12; a lone "1" counts as
 * rank 1 when the time is up or when any other key is pressed. 0 alone clears the rank. */
export class RankTyper {
  constructor(k, commit, onPending) {
    this.k = k;
    this.commit = commit; // (rank) => void; rank 0 = clear
    this.onPending = onPending || (() => {});
    this.pending = null;
    this.timer = null;
  }

  digit(d) {
    if (this.pending !== null) {
      const two = this.pending * 10 + d;
      if (two >= 1 && two <= this.k) {
        this.clear();
        this.commit(two);
        return;
      }
      this.flush();
    }
    if (d !== 0 && this.k >= 10 && d * 10 <= this.k) {
      this.pending = d;
      this.onPending(d);
      this.timer = setTimeout(() => this.flush(), RANK_WAIT_MS);
      return;
    }
    this.commit(d);
  }

  /** Commit a waiting single digit now (time is up, or another key was pressed). */
  flush() {
    if (this.pending === null) return;
    const d = this.pending;
    this.clear();
    this.commit(d);
  }

  clear() {
    clearTimeout(this.timer);
    this.pending = null;
    this.onPending(null);
  }
}

// The pairwise buttons' words: for text responses, and for clips (shown side by side: A left, B right).
const CHOICE_WORDS = {
  text: { question: "Which response is better, A or B?",
    a: ["A is better", "a"], b: ["B is better", "b"], tie: ["Tie", "t"], both_bad: ["Both bad", "x"] },
  clips: { question: "Which clip shows the better behaviour: left or right?",
    a: ["Left is better", "a"], b: ["Right is better", "b"], tie: ["Equal", "t"], cant_tell: ["Can't tell", "n"] },
};

// The page's state: the campaign, the shown task, and the answers given so far.
const page = { cid: null, task: null, focus: 0, busy: false, key: null, typer: null, urls: [] };
let answers = freshAnswers();

function freshAnswers() {
  return { ranks: {}, ratings: {}, thumbs: {}, choice: null, strength: null, edit: null };
}

const has = (type) => !!page.task && page.task.feedback_types.includes(type);
const clipTask = () => !!page.task && page.task.responses.some((r) => r.media);
const labelOf = (id) => LABELS[page.task.responses.findIndex((r) => r.id === id)] || String(id);
const cardOf = (id) => $(`#responses .response[data-id="${id}"]`);

async function loadNext(message, kind) {
  try {
    const res = await withRetry(() => api(`/api/campaigns/${page.cid}/next`));
    setProgress(res.progress);
    showTask(res.task, null);
    if (message) showMessage(message, kind || "ok");
  } catch (err) {
    showMessage(err.message, "error");
  }
}

function setProgress(p) {
  if (!p) return;
  $("#progress").textContent = `${p.done} / ${p.total}`;
  $("#progress-bar").style.width = (p.total ? (100 * p.done) / p.total : 0) + "%";
}

/** Show `task` (or the all-done panel); `previous` pre-fills the answers after an undo. */
function showTask(task, previous) {
  if (page.typer) page.typer.clear();
  page.task = task;
  page.urls.forEach((u) => URL.revokeObjectURL(u)); // the previous task's clips
  page.urls = [];
  page.key = newKey(); // one key per shown task, reused by every retry of its submission
  page.focus = 0;
  answers = freshAnswers();
  $("#task-area").hidden = !task;
  $("#done-panel").hidden = !!task;
  $("#problem-box").hidden = true;
  renderShortcuts();
  if (!task) return;
  page.typer = new RankTyper(task.responses.length, commitRank, showPendingDigit);
  setHTML($("#instructions"), task.instructions_html || "");
  renderPrompt(task.prompt_html);
  renderResponses();
  $("#pairwise").hidden = !(has("pairwise") && task.responses.length >= 2);
  setChoiceWords(clipTask() ? CHOICE_WORDS.clips : CHOICE_WORDS.text);
  $("#strength-row").hidden = clipTask(); // a clip pair asks left / right / equal / can't tell only
  $("#critique-box").hidden = !has("critique");
  $("#critique").value = "";
  if (previous) applyPrevious(previous);
  refresh();
  window.scrollTo({ top: 0 });
}

function applyPrevious(prev) {
  // response ids as the task gives them (numbers or opaque strings); JSON object keys are strings
  const idOf = (key) => (page.task.responses.find((r) => String(r.id) === String(key)) || { id: key }).id;
  if (prev.ranking) prev.ranking.forEach((group, g) => group.forEach((id) => { answers.ranks[idOf(id)] = g + 1; }));
  if (prev.ratings) for (const [id, v] of Object.entries(prev.ratings)) answers.ratings[idOf(id)] = v;
  if (prev.thumbs) for (const [id, v] of Object.entries(prev.thumbs)) answers.thumbs[idOf(id)] = v;
  if (prev.pairwise) {
    // the shown A/B may differ from the stored a/b only if the order changed; map by id
    const [a, b] = page.task.responses.map((r) => r.id);
    let choice = prev.pairwise.choice;
    if (prev.pairwise.a === b && prev.pairwise.b === a && (choice === "a" || choice === "b")) choice = choice === "a" ? "b" : "a";
    answers.choice = choice;
    answers.strength = prev.pairwise.strength || null;
  }
  if (prev.critique) $("#critique").value = prev.critique;
  if (prev.edit) openEdit(prev.edit.response_id, prev.edit.text, false);
}

function setChoiceWords(words) {
  $("#pairwise-question").textContent = words.question;
  $$("#choice-row .choice").forEach((b) => {
    const w = words[b.dataset.choice];
    b.hidden = !w;
    if (w) b.replaceChildren(w[0] + " ", el("kbd", {}, w[1]));
  });
}

/** A response's clip: fetched with the token, shown from a blob: URL (an image, or a looping video). */
function clipElement(r, i) {
  const video = r.media.type.startsWith("video/");
  const label = `clip ${LABELS[i]}`;
  const node = video
    ? el("video", { class: "clip", loop: true, muted: true, autoplay: true, playsinline: true, controls: true, "aria-label": label })
    : el("img", { class: "clip", alt: label });
  if (video) node.muted = true; // the attribute alone does not allow autoplay everywhere
  const task = page.task;
  apiBlob(r.media.url).then((blob) => {
    if (page.task !== task) return; // the annotator moved on meanwhile
    const url = URL.createObjectURL(blob);
    page.urls.push(url);
    node.src = url;
  }).catch((err) => showMessage(err.message, "error"));
  return el("div", { class: "clip-box" }, node);
}

function renderPrompt(messages) {
  const box = $("#prompt");
  box.replaceChildren();
  for (const m of messages || []) {
    const text = setHTML(el("div", { class: "msg-text markdown" }), m.html);
    box.append(m.role ? el("div", { class: "msg msg-" + m.role }, el("span", { class: "msg-role" }, m.role), text) : text);
  }
}

function renderResponses() {
  const box = $("#responses");
  box.replaceChildren();
  const k = page.task.responses.length;
  box.style.setProperty("--cols", String(Math.min(k, 3)));
  page.task.responses.forEach((r, i) => {
    const widgets = el("div", { class: "widgets" });
    if (has("ranking")) {
      widgets.append(el("div", { class: "widget rank-widget" },
        el("span", { class: "widget-label" }, "Rank"),
        ...Array.from({ length: k }, (_, j) =>
          el("button", { type: "button", class: "pill rank", dataset: { rank: String(j + 1) }, title: `rank ${j + 1}`,
            onclick: () => { setFocus(i); setRank(r.id, j + 1); } }, String(j + 1)))));
    }
    if (has("rating")) widgets.append(ratingWidget(r, i));
    if (has("binary")) {
      widgets.append(el("div", { class: "widget thumbs" }, el("span", { class: "widget-label" }, "Verdict"),
        el("button", { type: "button", class: "pill thumb thumb-up", title: "thumbs up (u)", "aria-label": "thumbs up",
          onclick: () => { setFocus(i); setThumb(r.id, true); } }, "✓ Good"),
        el("button", { type: "button", class: "pill thumb thumb-down", title: "thumbs down (d)", "aria-label": "thumbs down",
          onclick: () => { setFocus(i); setThumb(r.id, false); } }, "✗ Bad")));
    }
    if (has("edit")) {
      widgets.append(el("button", { type: "button", class: "pill edit-btn", title: "edit this response (i)",
        onclick: () => { setFocus(i); openEdit(r.id, null, true); } }, "✎ Edit"));
    }
    box.append(el("article", { class: "card response", tabindex: "-1", dataset: { id: String(r.id), label: LABELS[i] },
      onclick: (ev) => { if (!ev.target.closest("button, textarea, input, a")) setFocus(i); } },
      el("header", { class: "response-head" },
        el("span", { class: "response-label" }, LABELS[i]),
        el("span", { class: "rank-typing", hidden: true }),
        el("span", { class: "model-name" + (r.model ? "" : " hidden-model") }, r.model || "model hidden")),
      r.media ? clipElement(r, i) : null,
      setHTML(el("div", { class: "response-text markdown" }), r.html),
      el("div", { class: "edit-box", hidden: true },
        el("textarea", { class: "edit-text", rows: "6", "aria-label": `edited response ${LABELS[i]}`,
          oninput: (ev) => { answers.edit = { response_id: r.id, text: ev.target.value }; } }),
        el("div", { class: "button-row" },
          el("span", { class: "muted small" }, "Your edit is saved as a demonstration. "),
          el("button", { type: "button", class: "linklike", onclick: () => closeEdit() }, "Discard edit"))),
      widgets));
  });
}

function ratingWidget(r, i) {
  const [lo, hi] = page.task.rating_scale;
  const discrete = Number.isInteger(lo) && Number.isInteger(hi) && hi - lo <= 10;
  const w = el("div", { class: "widget rating-widget" }, el("span", { class: "widget-label" }, "Rating"));
  if (discrete) {
    for (let v = lo; v <= hi; v++) {
      w.append(el("button", { type: "button", class: "pill rate", dataset: { score: String(v) },
        onclick: () => { setFocus(i); setRating(r.id, v); } }, String(v)));
    }
  } else {
    w.append(el("input", { type: "number", class: "rate-input", min: lo, max: hi, step: "any",
      "aria-label": `rating ${LABELS[i]} (${lo} to ${hi})`,
      oninput: (ev) => { const v = ev.target.value; if (v === "") delete answers.ratings[r.id]; else answers.ratings[r.id] = Number(v); } }));
  }
  return w;
}

function openEdit(id, text, focus) {
  if (answers.edit && answers.edit.response_id !== id) closeEdit();
  const card = cardOf(id);
  if (!card) return;
  const box = $(".edit-box", card);
  const area = $(".edit-text", card);
  if (box.hidden || text !== null) area.value = text !== null ? text : page.task.responses.find((r) => r.id === id).text;
  box.hidden = false;
  answers.edit = { response_id: id, text: area.value };
  card.classList.add("editing");
  if (focus) area.focus();
}

function closeEdit() {
  if (!answers.edit) return;
  const card = cardOf(answers.edit.response_id);
  if (card) {
    $(".edit-box", card).hidden = true;
    card.classList.remove("editing");
  }
  answers.edit = null;
}

function setFocus(i) {
  if (!page.task) return;
  if (page.typer) page.typer.flush();
  const k = page.task.responses.length;
  page.focus = ((i % k) + k) % k;
  refresh();
}

function toggle(map, id, value) {
  if (map[id] === value) delete map[id];
  else map[id] = value;
  refresh();
}
const setRank = (id, rank) => toggle(answers.ranks, id, rank);
const setRating = (id, v) => toggle(answers.ratings, id, v);
const setThumb = (id, up) => toggle(answers.thumbs, id, up);

function setChoice(choice) {
  answers.choice = answers.choice === choice ? null : choice;
  if (answers.choice !== "a" && answers.choice !== "b") answers.strength = null;
  refresh();
}

function setStrength(strength) {
  if (answers.choice !== "a" && answers.choice !== "b") {
    showMessage("Pick A or B first; strength says how much better the chosen one is.", "error");
    return;
  }
  answers.strength = answers.strength === strength ? null : strength;
  refresh();
}

/** Ranks {id: rank} -> groups best -> worst (equal ranks share a group). */
function rankGroups() {
  const byRank = new Map();
  for (const r of page.task.responses) {
    const rank = answers.ranks[r.id];
    if (rank === undefined) continue;
    if (!byRank.has(rank)) byRank.set(rank, []);
    byRank.get(rank).push(r.id);
  }
  return Array.from(byRank.keys()).sort((a, b) => a - b).map((k) => byRank.get(k));
}

/** Re-apply the answers to the widgets' classes (cheap; called after every change). */
function refresh() {
  if (!page.task) return;
  const box = $("#message");
  if (box.classList.contains("error")) box.hidden = true; // the annotator acted on the problem
  page.task.responses.forEach((r, i) => {
    const card = cardOf(r.id);
    card.classList.toggle("focused", i === page.focus);
    $$(".rank", card).forEach((b) => b.classList.toggle("selected", Number(b.dataset.rank) === answers.ranks[r.id]));
    $$(".rate", card).forEach((b) => b.classList.toggle("selected", Number(b.dataset.score) === answers.ratings[r.id]));
    const input = $(".rate-input", card);
    if (input && document.activeElement !== input) input.value = answers.ratings[r.id] === undefined ? "" : answers.ratings[r.id];
    const up = $(".thumb-up", card), down = $(".thumb-down", card);
    if (up) up.classList.toggle("selected", answers.thumbs[r.id] === true);
    if (down) down.classList.toggle("selected", answers.thumbs[r.id] === false);
  });
  $$("#choice-row .choice").forEach((b) => b.classList.toggle("selected", b.dataset.choice === answers.choice));
  const strengthOn = answers.choice === "a" || answers.choice === "b";
  $$("#strength-row .strength").forEach((b) => {
    b.classList.toggle("selected", b.dataset.strength === answers.strength);
    b.disabled = !strengthOn;
  });
  $("#ranking-summary").hidden = !has("ranking");
  if (has("ranking")) {
    const groups = rankGroups();
    const missing = page.task.responses.length - groups.flat().length;
    $("#ranking-text").textContent = groups.length
      ? groups.map((g) => g.map(labelOf).join(" = ")).join("  >  ") + (missing ? `   (${missing} unranked)` : "")
      : "not ranked yet — press a digit to rank the highlighted response";
  }
}

class UserError extends Error {}

/** The submit body from the current answers (only the parts the annotator gave). */
function buildBody() {
  const t = page.task;
  const body = {};
  const ids = t.responses.map((r) => r.id);
  if (has("pairwise") && answers.choice) {
    body.pairwise = { a: ids[0], b: ids[1], choice: answers.choice };
    if (answers.strength && (answers.choice === "a" || answers.choice === "b")) body.pairwise.strength = answers.strength;
  }
  if (has("ranking")) {
    const groups = rankGroups();
    const ranked = groups.flat();
    if (ranked.length && ranked.length < ids.length) {
      const missing = ids.filter((id) => !ranked.includes(id)).map(labelOf);
      throw new UserError(`Rank every response before submitting (missing: ${missing.join(", ")}).`);
    }
    if (ranked.length) body.ranking = groups;
  }
  if (has("rating") && Object.keys(answers.ratings).length) body.ratings = { ...answers.ratings };
  if (has("binary") && Object.keys(answers.thumbs).length) body.thumbs = { ...answers.thumbs };
  const critique = $("#critique").value.trim();
  if (has("critique") && critique) body.critique = critique;
  if (has("edit") && answers.edit) {
    const original = t.responses.find((r) => r.id === answers.edit.response_id).text;
    if (answers.edit.text.trim() && answers.edit.text !== original) body.edit = { response_id: answers.edit.response_id, text: answers.edit.text };
  }
  if (!Object.keys(body).length) throw new UserError("Nothing to submit yet: give at least one answer (or skip with s).");
  return body;
}

function setBusy(busy) {
  page.busy = busy;
  document.body.classList.toggle("busy", busy);
  ["#submit", "#skip", "#undo", "#problem"].forEach((s) => { $(s).disabled = busy; });
}

/** Run one action at a time, showing its error in the message area. */
async function act(fn) {
  if (page.busy) return;
  setBusy(true);
  try {
    await fn();
  } catch (err) {
    showMessage(err.message, "error");
  } finally {
    setBusy(false);
  }
}

function submit() {
  if (!page.task || page.busy) return;
  if (page.typer) page.typer.flush();
  let body;
  try {
    body = buildBody();
  } catch (err) {
    showMessage(err.message, "error");
    return;
  }
  body.idempotency_key = page.key;
  const task = page.task;
  return act(async () => {
    const res = await withRetry(() => api(`/api/tasks/${task.task_id}/submit`, { method: "POST", body }));
    let message = "Saved.";
    if (task.responses.some((r) => !r.model) && res.revealed_models) {
      const parts = task.responses.map((r, i) => `${LABELS[i]} = ${res.revealed_models[String(r.id)] || "?"}`);
      message = "Saved. The models were: " + parts.join(" · ");
    }
    await loadNext(message, "ok");
  });
}

function skip() {
  if (!page.task) return;
  const id = page.task.task_id;
  return act(async () => {
    await withRetry(() => api(`/api/tasks/${id}/skip`, { method: "POST" }));
    await loadNext("Skipped.", "info");
  });
}

function undo() {
  return act(async () => {
    const res = await api(`/api/campaigns/${page.cid}/undo`, { method: "POST" });
    setProgress(res.progress);
    showTask(res.task, res.previous || null);
    showMessage(res.undone === "skip"
      ? "Your last skip was undone: the task is back."
      : "Your last submission was undone: it is back, with your answers, to change and submit again.", "info");
  });
}

function openProblem() {
  if (!page.task) return;
  $("#problem-box").hidden = false;
  $("#problem-reason").focus();
}

function sendProblem(ev) {
  ev.preventDefault();
  if (!page.task) return;
  const reason = $("#problem-reason").value;
  const details = $("#problem-text").value.trim();
  const text = details ? `${reason}: ${details}` : reason;
  const id = page.task.task_id;
  return act(async () => {
    await api(`/api/tasks/${id}/problem`, { method: "POST", body: { text } });
    $("#problem-text").value = "";
    await loadNext("Reported: the admins will see it on the review page. Here is the next task.", "info");
  });
}

/** Shortcuts of the current task's feedback types, as [keys, what] rows. */
function shortcutRows() {
  if (!page.task) return [["z  or  Ctrl+Z", "undo the last submission"]];
  const rows = [];
  const k = page.task.responses.length;
  const rankOn = has("ranking"), rateOn = has("rating");
  if (k > 1) rows.push(["j / k  or  ← / →", "highlight next / previous response"]);
  if (has("pairwise") && clipTask()) {
    rows.push([rankOn || rateOn ? "a / b" : "a / b  or  1 / 2", "left is better / right is better"]);
    rows.push(["t / n", "equal / can't tell"]);
  } else if (has("pairwise")) {
    rows.push([rankOn || rateOn ? "a / b" : "a / b  or  1 / 2", "A is better / B is better"]);
    rows.push(["t / x", "tie / both bad"]);
    rows.push(["q w e r", "significantly / better / slightly / negligibly better"]);
  }
  if (rankOn && k < 10) rows.push([`1 … ${k}`, "rank of the highlighted response (same rank twice = tie); 0 clears"]);
  if (rankOn && k >= 10) {
    rows.push([`1 … ${k}`, `rank of the highlighted response; ranks 10–${k}: type both digits quickly (1 0 = rank 10); ` +
      `a lone 1 counts after ${RANK_WAIT_MS / 1000} s or at the next key; same rank twice = tie; 0 clears`]);
  }
  if (rateOn) rows.push([rankOn ? "Shift + digit" : "digit", "rating of the highlighted response"]);
  if (has("binary")) rows.push(["u / d", "thumbs up / down on the highlighted response"]);
  if (has("edit")) rows.push(["i", "edit the highlighted response"]);
  if (has("critique")) rows.push(["c", "write a critique"]);
  rows.push(["Esc", "leave a text box"]);
  rows.push(["Enter  (Ctrl+Enter in text)", "submit"]);
  rows.push(["s", "skip this task"]);
  rows.push(["p", "can't judge / report a problem"]);
  rows.push(["z  or  Ctrl+Z", "undo the last submission"]);
  return rows;
}

function renderShortcuts() {
  const dl = $("#shortcuts");
  dl.replaceChildren();
  for (const [keys, what] of shortcutRows()) dl.append(el("dt", {}, el("kbd", {}, keys)), el("dd", {}, what));
}

function digitOf(ev) {
  const m = /^(?:Digit|Numpad)(\d)$/.exec(ev.code || "");
  if (m) return Number(m[1]);
  return /^\d$/.test(ev.key) ? Number(ev.key) : null;
}

function showPendingDigit(d) {
  $$("#responses .rank-typing").forEach((s) => { s.hidden = true; });
  if (d === null || !page.task) return;
  const span = $(".rank-typing", cardOf(page.task.responses[page.focus].id));
  span.textContent = `rank ${d}…`;
  span.hidden = false;
}

/** A typed rank for the highlighted response; the highlight moves to the next unranked one. */
function commitRank(rank) {
  const resp = page.task.responses[page.focus];
  const k = page.task.responses.length;
  if (rank === 0) { delete answers.ranks[resp.id]; refresh(); return; }
  if (rank > k) { showMessage(`Ranks go from 1 to ${k}.`, "error"); return; }
  answers.ranks[resp.id] = rank;
  const next = page.task.responses.findIndex((r, i) => i > page.focus && answers.ranks[r.id] === undefined);
  if (next >= 0) page.focus = next;
  refresh();
}

function onDigit(digit, shift, resp) {
  const rankOn = has("ranking"), rateOn = has("rating");
  if (rateOn && (shift || !rankOn)) {
    const [lo, hi] = page.task.rating_scale;
    if (digit < lo || digit > hi) {
      showMessage(`Ratings go from ${lo} to ${hi}.`, "error");
      return true;
    }
    answers.ratings[resp.id] = digit;
    refresh();
    return true;
  }
  if (rankOn && !shift) { page.typer.digit(digit); return true; }
  if (has("pairwise") && (digit === 1 || digit === 2)) { setChoice(digit === 1 ? "a" : "b"); return true; }
  return false;
}

function onKey(ev) {
  const target = ev.target;
  const typing = target && target.matches && target.matches("textarea, input, select, [contenteditable]");
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); submit(); return; }
  if (typing) {
    if (ev.key === "Escape") target.blur();
    return;
  }
  if ((ev.ctrlKey || ev.metaKey) && (ev.key === "z" || ev.key === "Z")) { ev.preventDefault(); undo(); return; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const key = ev.key;
  if (key === "z") { ev.preventDefault(); undo(); return; }
  if (!page.task) return;
  const digit = digitOf(ev);
  if (digit === null && page.typer && !["Shift", "Control", "Alt", "Meta"].includes(key)) page.typer.flush();
  const resp = page.task.responses[page.focus];
  let handled = true;
  if (key === "Enter") submit();
  else if (key === "s") skip();
  else if (key === "p") openProblem();
  else if (key === "j" || key === "ArrowRight" || key === "ArrowDown") setFocus(page.focus + 1);
  else if (key === "k" || key === "ArrowLeft" || key === "ArrowUp") setFocus(page.focus - 1);
  else if (has("pairwise") && (key === "a" || key === "b")) setChoice(key);
  else if (has("pairwise") && key === "t") setChoice("tie");
  else if (has("pairwise") && key === "x" && !clipTask()) setChoice("both_bad");
  else if (has("pairwise") && key === "n" && clipTask()) setChoice("cant_tell");
  else if (has("pairwise") && key in STRENGTH_KEYS && !clipTask()) setStrength(STRENGTHS[STRENGTH_KEYS[key]]);
  else if (has("binary") && key === "u") setThumb(resp.id, true);
  else if (has("binary") && key === "d") setThumb(resp.id, false);
  else if (has("edit") && key === "i") openEdit(resp.id, null, true);
  else if (has("critique") && key === "c") $("#critique").focus();
  else if (digit !== null) handled = onDigit(digit, ev.shiftKey, resp);
  else handled = false;
  if (handled) ev.preventDefault();
}

boot(async () => {
  const me = await requireLogin();
  if (!me) return;
  page.cid = campaignId();
  try {
    const campaign = await api("/api/campaigns/" + page.cid);
    $("#campaign-name").textContent = campaign.name;
    document.title = campaign.name + " · prefloop feedback";
  } catch (err) {
    showMessage(err.message, "error");
  }
  $("#submit").addEventListener("click", submit);
  $("#skip").addEventListener("click", skip);
  $("#undo").addEventListener("click", undo);
  $("#undo-done").addEventListener("click", undo);
  $("#problem").addEventListener("click", openProblem);
  $("#problem-form").addEventListener("submit", sendProblem);
  $("#problem-cancel").addEventListener("click", () => { $("#problem-box").hidden = true; });
  $$("#choice-row .choice").forEach((b) => b.addEventListener("click", () => setChoice(b.dataset.choice)));
  $$("#strength-row .strength").forEach((b) => b.addEventListener("click", () => setStrength(b.dataset.strength)));
  document.addEventListener("keydown", onKey);
  await loadNext();
});
