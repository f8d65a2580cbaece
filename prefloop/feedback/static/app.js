/* prefloop feedback UI: plain JS, no build step. Every page talks to the REST API with the
 * bearer token kept in localStorage ("prefloop_token").
 * Safety rule: text that comes from data (prompts, responses, model and user names) is only
 * ever put into the page with textContent / text nodes (see el()), never innerHTML. */
"use strict";

(function () {
  const TOKEN_KEY = "prefloop_token";
  const LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better"];
  const STRENGTH_KEYS = { q: 0, w: 1, e: 2, r: 3 };

  // ------------------------------------------------------------------ small helpers
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  /** Create an element; string children become text nodes (never parsed as HTML). */
  function el(tag, props, ...children) {
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

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(x, digits) {
    return x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits === undefined ? 3 : digits);
  }

  function showMessage(text, kind) {
    const box = $("#message");
    if (!box) return;
    box.textContent = text;
    box.className = "message " + (kind || "info");
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.hidden = !text;
  }

  /** A fresh idempotency key: crypto.randomUUID where available (secure contexts), else random hex. */
  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function goLogin() {
    localStorage.removeItem(TOKEN_KEY);
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(path, { method: opts.method || "GET", headers, body });
    const text = await res.text();
    let data = text;
    if (opts.raw !== true) {
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

  /** Run `fn` again after network failures and 5xx answers (same request, so same idempotency key). */
  async function withRetry(fn, attempts) {
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

  // ------------------------------------------------------------------ header
  async function initHeader(me) {
    const logout = $("#logout");
    if (me) {
      $("#user-name").textContent = me.name + (me.role === "admin" ? " (admin)" : "");
      logout.hidden = false;
      logout.addEventListener("click", async () => {
        try {
          await api("/api/logout", { method: "POST", noRedirect: true }); // revoke it on the server
        } catch (_) { /* already invalid: nothing to revoke */ }
        localStorage.removeItem(TOKEN_KEY);
        location.href = "/login";
      });
    }
  }

  async function requireLogin() {
    if (!localStorage.getItem(TOKEN_KEY)) {
      goLogin();
      return null;
    }
    const me = await api("/api/me");
    await initHeader(me);
    return me;
  }

  function campaignId() {
    const fromBody = document.body.dataset.campaign;
    if (fromBody) return Number(fromBody);
    const m = location.pathname.match(/\/(\d+)\/?$/);
    return m ? Number(m[1]) : null;
  }

  // ------------------------------------------------------------------ login page
  /** `next` as a path on this server, or "/": parsed the way the browser will follow it
   * (backslashes, tabs, "//host" all resolve to another origin and are refused). */
  function sameOriginPath(next) {
    if (!next) return "/";
    let url;
    try {
      url = new URL(next, location.origin);
    } catch (_) {
      return "/";
    }
    if (url.origin !== location.origin || !next.startsWith("/")) return "/";
    return url.pathname + url.search + url.hash;
  }

  function initLogin() {
    const params = new URLSearchParams(location.search);
    const target = sameOriginPath(params.get("next"));
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
  }

  // ------------------------------------------------------------------ campaign list
  async function initIndex() {
    const me = await requireLogin();
    if (!me) return;
    const box = $("#campaigns");
    const campaigns = await api("/api/campaigns");
    box.removeAttribute("aria-busy");
    if (me.role === "admin") $("#index-hint").textContent = "All campaigns; annotate the ones you are part of.";
    if (!campaigns.length) {
      box.append(el("p", { class: "muted" }, "No campaigns for you yet. An admin adds you to one."));
      return;
    }
    for (const c of campaigns) {
      const p = c.progress;
      const links = el("div", { class: "button-row" });
      if (p) {
        const left = p.total - p.done;
        links.append(el("a", { class: "button primary", href: "/annotate/" + c.id }, left ? "Annotate" : "Review"));
      }
      if (me.role === "admin") {
        links.append(el("a", { class: "button", href: "/leaderboard/" + c.id }, "Leaderboard"));
        links.append(el("a", { class: "button", href: "/report/" + c.id }, "Report"));
      }
      const stats = me.role === "admin" && c.n_items !== undefined
        ? el("p", { class: "muted small" },
            `${c.n_items} items · ${c.n_annotators} annotators · overlap ${c.overlap} · ${c.n_judgments} judgments`)
        : null;
      box.append(
        el("article", { class: "card campaign", dataset: { id: String(c.id) } },
          el("h2", {}, c.name),
          el("div", { class: "chips" }, c.feedback_types.map((t) => el("span", { class: "chip" }, t)),
            c.anonymous ? el("span", { class: "chip chip-dim" }, "anonymous") : null),
          p ? progressLine(p) : null,
          stats,
          links)
      );
    }
  }

  function progressLine(p) {
    const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
    return el("div", { class: "progress-inline" },
      el("span", { class: "small" }, `${p.done} / ${p.total} done`),
      el("div", { class: "progress-track" }, el("div", { class: "progress-bar", style: `width:${pct}%` })));
  }

  // ------------------------------------------------------------------ annotation page
  const S = {
    cid: null, campaign: null, task: null, progress: null, focus: 0, busy: false,
    ranks: {}, ratings: {}, thumbs: {}, choice: null, strength: null, edit: null, key: null,
  };

  function has(type) {
    return !!S.task && S.task.feedback_types.includes(type);
  }

  function labelOf(id) {
    const i = S.task.responses.findIndex((r) => r.id === id);
    return LABELS[i] || String(id);
  }

  async function initAnnotate() {
    const me = await requireLogin();
    if (!me) return;
    S.cid = campaignId();
    try {
      S.campaign = await api("/api/campaigns/" + S.cid);
      $("#campaign-name").textContent = S.campaign.name;
      document.title = S.campaign.name + " · prefloop feedback";
    } catch (err) {
      showMessage(err.message, "error");
    }
    $("#submit").addEventListener("click", submit);
    $("#skip").addEventListener("click", skip);
    $("#undo").addEventListener("click", undo);
    $("#undo-done").addEventListener("click", undo);
    $$("#choice-row .choice").forEach((b) => b.addEventListener("click", () => setChoice(b.dataset.choice)));
    $$("#strength-row .strength").forEach((b) => b.addEventListener("click", () => setStrength(b.dataset.strength)));
    document.addEventListener("keydown", onKey);
    await loadNext();
  }

  async function loadNext(message, kind) {
    try {
      const res = await withRetry(() => api(`/api/campaigns/${S.cid}/next`));
      setProgress(res.progress);
      showTask(res.task, null);
      if (message) showMessage(message, kind || "ok");
    } catch (err) {
      showMessage(err.message, "error");
    }
  }

  function setProgress(p) {
    if (!p) return;
    S.progress = p;
    $("#progress").textContent = `${p.done} / ${p.total}`;
    $("#progress-bar").style.width = (p.total ? (100 * p.done) / p.total : 0) + "%";
  }

  /** Show `task` (or the all-done panel); `previous` pre-fills the answers after an undo. */
  function showTask(task, previous) {
    S.task = task;
    S.key = newKey(); // one key per shown task, reused by every retry of its submission
    S.focus = 0;
    S.ranks = {}; S.ratings = {}; S.thumbs = {}; S.choice = null; S.strength = null; S.edit = null;
    $("#task-area").hidden = !task;
    $("#done-panel").hidden = !!task;
    renderShortcuts();
    if (!task) return;
    $("#instructions").textContent = task.instructions || "";
    renderPrompt(task.prompt);
    renderResponses();
    $("#pairwise").hidden = !(has("pairwise") && task.responses.length >= 2);
    $("#critique-box").hidden = !has("critique");
    $("#critique").value = "";
    if (previous) applyPrevious(previous);
    refresh();
    window.scrollTo({ top: 0 });
  }

  function applyPrevious(prev) {
    if (prev.ranking) prev.ranking.forEach((group, g) => group.forEach((id) => { S.ranks[id] = g + 1; }));
    if (prev.ratings) for (const [id, v] of Object.entries(prev.ratings)) S.ratings[Number(id)] = v;
    if (prev.thumbs) for (const [id, v] of Object.entries(prev.thumbs)) S.thumbs[Number(id)] = v;
    if (prev.pairwise) {
      // the shown A/B may differ from the stored a/b only if the order changed; map by id
      const [a, b] = S.task.responses.map((r) => r.id);
      let choice = prev.pairwise.choice;
      if (prev.pairwise.a === b && prev.pairwise.b === a && (choice === "a" || choice === "b")) {
        choice = choice === "a" ? "b" : "a";
      }
      S.choice = choice;
      S.strength = prev.pairwise.strength || null;
    }
    if (prev.critique) $("#critique").value = prev.critique;
    if (prev.edit) openEdit(prev.edit.response_id, prev.edit.text, false);
  }

  function renderPrompt(prompt) {
    const box = $("#prompt");
    box.replaceChildren();
    if (Array.isArray(prompt)) {
      for (const m of prompt) {
        box.append(el("div", { class: "msg msg-" + (m.role || "user") },
          el("span", { class: "msg-role" }, m.role || "user"), el("div", { class: "msg-text" }, m.content || "")));
      }
    } else {
      box.append(el("div", { class: "msg-text" }, prompt));
    }
  }

  function renderResponses() {
    const box = $("#responses");
    box.replaceChildren();
    const t = S.task;
    const k = t.responses.length;
    box.style.setProperty("--cols", String(Math.min(k, 3)));
    t.responses.forEach((r, i) => {
      const widgets = el("div", { class: "widgets" });
      if (has("ranking")) {
        widgets.append(el("div", { class: "widget rank-widget" },
          el("span", { class: "widget-label" }, "Rank"),
          ...Array.from({ length: k }, (_, j) =>
            el("button", { type: "button", class: "pill rank", dataset: { rank: String(j + 1) }, title: `rank ${j + 1} (key ${j + 1})`,
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
      const card = el("article", { class: "card response", tabindex: "-1", dataset: { id: String(r.id), label: LABELS[i] },
        onclick: (ev) => { if (!ev.target.closest("button, textarea, input")) setFocus(i); } },
        el("header", { class: "response-head" },
          el("span", { class: "response-label" }, LABELS[i]),
          el("span", { class: "model-name" + (r.model ? "" : " hidden-model") }, r.model || "model hidden")),
        el("div", { class: "response-text" }, r.text),
        el("div", { class: "edit-box", hidden: true },
          el("textarea", { class: "edit-text", rows: "6", "aria-label": `edited response ${LABELS[i]}`,
            oninput: (ev) => { S.edit = { response_id: r.id, text: ev.target.value }; } }),
          el("div", { class: "button-row" },
            el("span", { class: "muted small" }, "Your edit is saved as a demonstration. "),
            el("button", { type: "button", class: "linklike", onclick: () => closeEdit() }, "Discard edit"))),
        widgets);
      box.append(card);
    });
  }

  function ratingWidget(r, i) {
    const [lo, hi] = S.task.rating_scale;
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
        oninput: (ev) => { const v = ev.target.value; if (v === "") delete S.ratings[r.id]; else S.ratings[r.id] = Number(v); } }));
    }
    return w;
  }

  function cardOf(id) {
    return $(`#responses .response[data-id="${id}"]`);
  }

  function openEdit(id, text, focus) {
    if (S.edit && S.edit.response_id !== id) closeEdit();
    const card = cardOf(id);
    if (!card) return;
    const box = $(".edit-box", card);
    const area = $(".edit-text", card);
    if (box.hidden || text !== null) {
      area.value = text !== null ? text : S.task.responses.find((r) => r.id === id).text;
    }
    box.hidden = false;
    S.edit = { response_id: id, text: area.value };
    card.classList.add("editing");
    if (focus) area.focus();
  }

  function closeEdit() {
    if (!S.edit) return;
    const card = cardOf(S.edit.response_id);
    if (card) {
      $(".edit-box", card).hidden = true;
      card.classList.remove("editing");
    }
    S.edit = null;
  }

  function setFocus(i) {
    if (!S.task) return;
    const k = S.task.responses.length;
    S.focus = ((i % k) + k) % k;
    refresh();
  }

  function setRank(id, rank) {
    if (S.ranks[id] === rank) delete S.ranks[id];
    else S.ranks[id] = rank;
    refresh();
  }

  function setRating(id, v) {
    if (S.ratings[id] === v) delete S.ratings[id];
    else S.ratings[id] = v;
    refresh();
  }

  function setThumb(id, up) {
    if (S.thumbs[id] === up) delete S.thumbs[id];
    else S.thumbs[id] = up;
    refresh();
  }

  function setChoice(choice) {
    S.choice = S.choice === choice ? null : choice;
    if (S.choice !== "a" && S.choice !== "b") S.strength = null;
    refresh();
  }

  function setStrength(strength) {
    if (S.choice !== "a" && S.choice !== "b") {
      showMessage("Pick A or B first; strength says how much better the chosen one is.", "error");
      return;
    }
    S.strength = S.strength === strength ? null : strength;
    refresh();
  }

  /** Ranks {id: rank} -> groups best -> worst (equal ranks share a group). */
  function rankGroups() {
    const byRank = new Map();
    for (const r of S.task.responses) {
      const rank = S.ranks[r.id];
      if (rank === undefined) continue;
      if (!byRank.has(rank)) byRank.set(rank, []);
      byRank.get(rank).push(r.id);
    }
    return Array.from(byRank.keys()).sort((a, b) => a - b).map((k) => byRank.get(k));
  }

  /** Re-apply the state to the widgets' classes (cheap; called after every change). */
  function refresh() {
    if (!S.task) return;
    const box = $("#message");
    if (box.classList.contains("error")) box.hidden = true; // the annotator acted on the problem
    S.task.responses.forEach((r, i) => {
      const card = cardOf(r.id);
      card.classList.toggle("focused", i === S.focus);
      $$(".rank", card).forEach((b) => b.classList.toggle("selected", Number(b.dataset.rank) === S.ranks[r.id]));
      $$(".rate", card).forEach((b) => b.classList.toggle("selected", Number(b.dataset.score) === S.ratings[r.id]));
      const input = $(".rate-input", card);
      if (input && document.activeElement !== input) input.value = S.ratings[r.id] === undefined ? "" : S.ratings[r.id];
      const up = $(".thumb-up", card), down = $(".thumb-down", card);
      if (up) up.classList.toggle("selected", S.thumbs[r.id] === true);
      if (down) down.classList.toggle("selected", S.thumbs[r.id] === false);
    });
    $$("#choice-row .choice").forEach((b) => b.classList.toggle("selected", b.dataset.choice === S.choice));
    const strengthOn = S.choice === "a" || S.choice === "b";
    $$("#strength-row .strength").forEach((b) => {
      b.classList.toggle("selected", b.dataset.strength === S.strength);
      b.disabled = !strengthOn;
    });
    const summary = $("#ranking-summary");
    summary.hidden = !has("ranking");
    if (has("ranking")) {
      const groups = rankGroups();
      const missing = S.task.responses.length - groups.flat().length;
      $("#ranking-text").textContent = groups.length
        ? groups.map((g) => g.map(labelOf).join(" = ")).join("  >  ") + (missing ? `   (${missing} unranked)` : "")
        : "not ranked yet — press a digit to rank the highlighted response";
    }
  }

  class UserError extends Error {}

  /** The submit body from the current answers (only the parts the annotator gave). */
  function buildBody() {
    const t = S.task;
    const body = {};
    const ids = t.responses.map((r) => r.id);
    if (has("pairwise") && S.choice) {
      body.pairwise = { a: ids[0], b: ids[1], choice: S.choice };
      if (S.strength && (S.choice === "a" || S.choice === "b")) body.pairwise.strength = S.strength;
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
    if (has("rating") && Object.keys(S.ratings).length) body.ratings = { ...S.ratings };
    if (has("binary") && Object.keys(S.thumbs).length) body.thumbs = { ...S.thumbs };
    const critique = $("#critique").value.trim();
    if (has("critique") && critique) body.critique = critique;
    if (has("edit") && S.edit) {
      const original = t.responses.find((r) => r.id === S.edit.response_id).text;
      if (S.edit.text.trim() && S.edit.text !== original) body.edit = { response_id: S.edit.response_id, text: S.edit.text };
    }
    if (!Object.keys(body).length) throw new UserError("Nothing to submit yet: give at least one answer (or skip with s).");
    return body;
  }

  function setBusy(busy) {
    S.busy = busy;
    document.body.classList.toggle("busy", busy);
    ["#submit", "#skip", "#undo"].forEach((s) => { $(s).disabled = busy; });
  }

  async function submit() {
    if (S.busy || !S.task) return;
    let body;
    try {
      body = buildBody();
    } catch (err) {
      showMessage(err.message, "error");
      return;
    }
    body.idempotency_key = S.key;
    const task = S.task;
    const anonymous = task.responses.some((r) => !r.model);
    setBusy(true);
    try {
      const res = await withRetry(() => api(`/api/tasks/${task.task_id}/submit`, { method: "POST", body }));
      let message = "Saved.";
      if (anonymous && res.revealed_models) {
        const parts = task.responses.map((r, i) => `${LABELS[i]} = ${res.revealed_models[String(r.id)] || "?"}`);
        message = "Saved. The models were: " + parts.join(" · ");
      }
      await loadNext(message, "ok");
    } catch (err) {
      showMessage(err.message, "error");
    } finally {
      setBusy(false);
    }
  }

  async function skip() {
    if (S.busy || !S.task) return;
    setBusy(true);
    try {
      await withRetry(() => api(`/api/tasks/${S.task.task_id}/skip`, { method: "POST" }));
      await loadNext("Skipped.", "info");
    } catch (err) {
      showMessage(err.message, "error");
    } finally {
      setBusy(false);
    }
  }

  async function undo() {
    if (S.busy) return;
    setBusy(true);
    try {
      const res = await api(`/api/campaigns/${S.cid}/undo`, { method: "POST" });
      setProgress(res.progress);
      showTask(res.task, res.previous || null);
      showMessage(res.undone === "skip"
        ? "Your last skip was undone: the task is back."
        : "Your last submission was undone: it is back, with your answers, to change and submit again.", "info");
    } catch (err) {
      showMessage(err.message, "error");
    } finally {
      setBusy(false);
    }
  }

  /** Shortcuts of the current task's feedback types, as [keys, what] rows. */
  function shortcutRows() {
    if (!S.task) return [["z  or  Ctrl+Z", "undo the last submission"]];
    const rows = [];
    const rankOn = has("ranking"), rateOn = has("rating");
    if (S.task && S.task.responses.length > 1) rows.push(["j / k  or  ← / →", "highlight next / previous response"]);
    if (has("pairwise")) {
      rows.push([rankOn || rateOn ? "a / b" : "a / b  or  1 / 2", "A is better / B is better"]);
      rows.push(["t / x", "tie / both bad"]);
      rows.push(["q w e r", "significantly / better / slightly / negligibly better"]);
    }
    if (rankOn) rows.push(["1 … 9", "rank of the highlighted response (same digit twice = tie); 0 clears"]);
    if (rateOn) rows.push([rankOn ? "Shift + digit" : "digit", "rating of the highlighted response"]);
    if (has("binary")) rows.push(["u / d", "thumbs up / down on the highlighted response"]);
    if (has("edit")) rows.push(["i", "edit the highlighted response"]);
    if (has("critique")) rows.push(["c", "write a critique"]);
    rows.push(["Esc", "leave a text box"]);
    rows.push(["Enter  (Ctrl+Enter in text)", "submit"]);
    rows.push(["s", "skip this task"]);
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
    if (!S.task) return;
    const resp = S.task.responses[S.focus];
    const digit = digitOf(ev);
    let handled = true;
    if (key === "Enter") submit();
    else if (key === "s") skip();
    else if (key === "j" || key === "ArrowRight" || key === "ArrowDown") setFocus(S.focus + 1);
    else if (key === "k" || key === "ArrowLeft" || key === "ArrowUp") setFocus(S.focus - 1);
    else if (has("pairwise") && (key === "a" || key === "b")) setChoice(key);
    else if (has("pairwise") && key === "t") setChoice("tie");
    else if (has("pairwise") && key === "x") setChoice("both_bad");
    else if (has("pairwise") && key in STRENGTH_KEYS) setStrength(STRENGTHS[STRENGTH_KEYS[key]]);
    else if (has("binary") && key === "u") setThumb(resp.id, true);
    else if (has("binary") && key === "d") setThumb(resp.id, false);
    else if (has("edit") && key === "i") openEdit(resp.id, null, true);
    else if (has("critique") && key === "c") $("#critique").focus();
    else if (digit !== null) handled = onDigit(digit, ev.shiftKey, resp);
    else handled = false;
    if (handled) ev.preventDefault();
  }

  function onDigit(digit, shift, resp) {
    const rankOn = has("ranking"), rateOn = has("rating");
    if (rateOn && (shift || !rankOn)) {
      const [lo, hi] = S.task.rating_scale;
      if (digit < lo || digit > hi) {
        showMessage(`Ratings go from ${lo} to ${hi}.`, "error");
        return true;
      }
      S.ratings[resp.id] = digit;
      refresh();
      return true;
    }
    if (rankOn && !shift) {
      const k = S.task.responses.length;
      if (digit === 0) { delete S.ranks[resp.id]; refresh(); return true; }
      if (digit > k) { showMessage(`Ranks go from 1 to ${k}.`, "error"); return true; }
      S.ranks[resp.id] = digit;
      // move on to the next unranked response so typing "2 1 3" ranks A, B, C
      const next = S.task.responses.findIndex((r, i) => i > S.focus && S.ranks[r.id] === undefined);
      if (next >= 0) S.focus = next;
      refresh();
      return true;
    }
    if (has("pairwise") && (digit === 1 || digit === 2)) { setChoice(digit === 1 ? "a" : "b"); return true; }
    return false;
  }

  // ------------------------------------------------------------------ leaderboard page
  async function initLeaderboard() {
    const me = await requireLogin();
    if (!me) return;
    const cid = campaignId();
    $("#report-link").href = "/report/" + cid;
    try {
      const [campaign, board] = await Promise.all([
        api("/api/campaigns/" + cid),
        api(`/api/campaigns/${cid}/leaderboard`),
      ]);
      $("#campaign-name").textContent = "· " + campaign.name;
      renderLeaderboard(board);
    } catch (err) {
      showMessage(err.message, "error");
    }
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
    // grid + axis ticks
    const step = niceStep((hi - lo) / 6);
    for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) {
      plot.append(svg("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height - bottom, class: "grid" }));
      plot.append(svg("text", { x: x(t), y: height - bottom + 18, class: "tick", "text-anchor": "middle" }, String(Math.round(t))));
    }
    plot.append(svg("text", { x: (left + width - right) / 2, y: height - 6, class: "axis-label", "text-anchor": "middle" },
      "rating (Elo scale)"));
    if (lo < 1000 && hi > 1000) {
      plot.append(svg("line", { x1: x(1000), x2: x(1000), y1: top - 6, y2: height - bottom, class: "baseline" }));
    }
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

  function niceStep(raw) {
    const p = 10 ** Math.floor(Math.log10(raw || 1));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  // ------------------------------------------------------------------ report page
  async function initReport() {
    const me = await requireLogin();
    if (!me) return;
    const cid = campaignId();
    $("#leaderboard-link").href = "/leaderboard/" + cid;
    try {
      const [campaign, report] = await Promise.all([api("/api/campaigns/" + cid), api(`/api/campaigns/${cid}/report`)]);
      $("#campaign-name").textContent = "· " + campaign.name;
      renderExportButtons(cid, campaign.feedback_types);
      renderReport(report);
    } catch (err) {
      showMessage(err.message, "error");
    }
  }

  function statCard(label, value, hint) {
    return el("div", { class: "card stat" }, el("div", { class: "stat-value" }, value),
      el("div", { class: "stat-label" }, label), hint ? el("div", { class: "muted small" }, hint) : null);
  }

  function renderReport(rep) {
    const flagged = rep.annotators.filter((a) => a.flagged).length;
    $("#stat-cards").replaceChildren(
      statCard("judgments", String(rep.n_judgments), `${rep.n_items} items`),
      statCard("Krippendorff α · ratings", fmt(rep.krippendorff_alpha_ratings), "interval"),
      statCard("Krippendorff α · rankings", fmt(rep.krippendorff_alpha_rankings), "ordinal"),
      statCard("agreement on pairs", rep.percent_agreement_pairs === null ? "—" : fmt(100 * rep.percent_agreement_pairs, 1) + "%",
        "annotator pairs choosing alike"),
      statCard("flagged annotators", `${flagged} / ${rep.annotators.length}`, flagged ? "review below" : "none"));
    const tbody = $("#annotator-table tbody");
    tbody.replaceChildren();
    for (const a of rep.annotators) {
      tbody.append(el("tr", { class: a.flagged ? "flagged" : "", dataset: { annotator: String(a.name) } },
        el("td", {}, String(a.name)),
        el("td", { class: "num" }, String(a.n)),
        el("td", { class: "num" }, a.gold_accuracy === null ? "—" : fmt(100 * a.gold_accuracy, 0) + "%"),
        el("td", { class: "num" }, fmt(a.kendall_tau_vs_consensus, 2)),
        el("td", { class: "num" }, a.pair_agreement === null ? "—" : fmt(100 * a.pair_agreement, 0) + "%"),
        el("td", { class: "flag" }, a.flagged ? el("span", { class: "badge" }, "⚑ " + (a.reason || "flagged")) : "ok")));
    }
    if (!rep.annotators.length) tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No judgments yet.")));
  }

  // Export kinds and the feedback types they are made from (docs/feedback.md, "Export").
  const EXPORT_SOURCES = { pairwise: ["pairwise", "ranking"], ranked: ["ranking"], binary: ["binary"],
    rating: ["rating"], demonstration: ["edit"] };

  /** One download button per export kind this campaign collects data for (an empty file helps nobody). */
  function renderExportButtons(cid, feedbackTypes) {
    const row = $("#export-row");
    row.replaceChildren();
    for (const [kind, sources] of Object.entries(EXPORT_SOURCES)) {
      if (!sources.some((t) => feedbackTypes.includes(t))) continue;
      for (const mode of ["raw", "consensus"]) {
        if (mode === "consensus" && kind === "demonstration") continue;
        row.append(el("button", { type: "button", class: "pill", onclick: () => download(cid, kind, mode) }, `${kind} · ${mode}`));
      }
    }
  }

  async function download(cid, kind, mode) {
    try {
      const text = await api(`/api/campaigns/${cid}/export?kind=${kind}&mode=${mode}`, { raw: true });
      const url = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
      const a = el("a", { href: url, download: `campaign${cid}-${kind}-${mode}.jsonl` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      showMessage(err.message, "error");
    }
  }

  // ------------------------------------------------------------------ boot
  const PAGES = { login: initLogin, index: initIndex, annotate: initAnnotate, leaderboard: initLeaderboard, report: initReport };

  document.addEventListener("DOMContentLoaded", () => {
    const init = PAGES[document.body.dataset.page];
    if (!init) return;
    Promise.resolve(init()).catch((err) => showMessage(err.message || String(err), "error"));
  });

  window.prefloop = { api, el, newKey }; // handy in the console and for tests
})();
