"""The annotation UI in a real browser: Debian's Chromium driven by Playwright against a real server.

Never downloads a browser: skipped when /usr/bin/chromium is missing (`apt-get install chromium`).
Screenshots of every page go to $PREFLOOP_SCREENSHOTS (default: a pytest tmp dir).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.timeout(180),
]

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("PREFLOOP_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []  # any alert() would land here
    pg.errors = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def login(page: Any, base: str, name: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_url(base + "/")


def card_ids(page: Any) -> list[int]:
    return [
        int(x) for x in page.eval_on_selector_all("#responses .response", "els => els.map(e => e.dataset.id)")
    ]


def shown_texts(server: Any, page: Any, cid: int) -> dict[int, str]:
    """The current task's cards as the API shows them to the logged-in annotator: id -> text."""
    token = page.evaluate("localStorage.getItem('prefloop_token')")
    task = server.api("GET", f"/api/campaigns/{cid}/next", token=token).json()["task"]
    return {r["id"]: r["text"] for r in task["responses"]}


def in_shown_ids(judgment: dict[str, Any], texts: dict[int, str]) -> dict[str, Any]:
    """A stored payload (database ids) rewritten with the ids its annotator saw (opaque aliases)."""
    shown_of_text = {t: i for i, t in texts.items()}
    alias = {r["id"]: shown_of_text[r["text"]] for r in judgment["responses"]}
    p = dict(judgment["payload"])
    if "pairwise" in p:
        p["pairwise"] = {**p["pairwise"], "a": alias[p["pairwise"]["a"]], "b": alias[p["pairwise"]["b"]]}
    if "ranking" in p:
        p["ranking"] = [[alias[r] for r in g] for g in p["ranking"]]
    for key in ("ratings", "thumbs"):
        if key in p:
            p[key] = {str(alias[int(r)]): v for r, v in p[key].items()}
    if "edit" in p:
        p["edit"] = {**p["edit"], "response_id": alias[p["edit"]["response_id"]]}
    return p


def judgments(server: Any, cid: int) -> list[dict[str, Any]]:
    r = server.api("GET", f"/api/campaigns/{cid}/judgments", token=server.admin_token)
    r.raise_for_status()
    return r.json()


def test_annotate_with_keyboard_edit_skip_undo(live_server: Any, page: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    base = live_server.base_url
    r = live_server.api(
        "POST",
        "/api/users",
        token=live_server.admin_token,
        json={"name": "alice", "role": "annotator", "password": "alice-password"},
    )
    r.raise_for_status()
    models = ["m-good", "m-plain", "m-xss"]
    items = [
        {
            "prompt": f"Question {i}: explain tides.",
            "responses": [
                {"text": f"Tides come from the Moon's gravity ({i}).", "model": models[0]},
                {"text": f"The sea moves ({i}).", "model": models[1]},
                {"text": f"Hmm {XSS} tides ({i})", "model": models[2]},
            ],
        }
        for i in range(3)
    ]
    camp = live_server.create_campaign(
        name="Tides",
        annotators=["alice"],
        items=items,
        anonymous=True,
        instructions="Rank the answers; ties are fine.",
    )
    cid = camp.id

    login(page, base, "alice", "alice-password")
    expect(page.locator(".campaign h2")).to_have_text("Tides")
    page.screenshot(path=str(shots / "index.png"), full_page=True)
    page.click(".campaign a.primary")
    page.wait_for_url(f"{base}/annotate/{cid}")
    expect(page.locator("#progress")).to_have_text("0 / 3")
    page.evaluate("window.marker = 1")  # survives only if no full page load happens

    # model text is shown as text: the script tag is visible, never executed, never an element
    expect(page.locator(".response-text", has_text=XSS)).to_have_count(1)
    assert page.evaluate("document.querySelectorAll('#responses script').length") == 0
    expect(page.locator(".model-name").first).to_have_text("model hidden")

    # an API error is shown in the message area: nothing to undo yet
    page.keyboard.press("z")
    expect(page.locator("#message")).to_contain_text("nothing to undo")
    # submitting nothing is refused with a visible message
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("Nothing to submit yet")

    a, b, c = card_ids(page)
    texts1 = shown_texts(live_server, page, cid)
    # ranking by digits: focus starts on A and moves to the next unranked response: A=2, B=1, C=3
    for key in ("2", "1", "3"):
        page.keyboard.press(key)
    expect(page.locator("#ranking-text")).to_have_text("B  >  A  >  C")
    # pairwise with strength: B is slightly better
    page.keyboard.press("b")
    page.keyboard.press("e")
    expect(page.locator("#choice-b")).to_have_class(re.compile("selected"))
    expect(page.locator("#strength-slightly_better")).to_have_class(re.compile("selected"))
    # rating (Shift+digit, since digits rank) and thumbs on A (j wraps from C to A), thumbs down on B
    page.keyboard.press("j")
    expect(page.locator(".response.focused")).to_have_attribute("data-label", "A")
    page.keyboard.press("Shift+Digit6")
    page.keyboard.press("u")
    page.keyboard.press("j")
    page.keyboard.press("d")
    expect(page.locator(f'.response[data-id="{a}"] .rate.selected')).to_have_text("6")
    # critique and an edit of B (the focused response)
    page.keyboard.press("c")
    page.keyboard.type("B is the most faithful.")
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    edit = page.locator(f'.response[data-id="{b}"] .edit-text')
    expect(edit).to_be_focused()
    edit.fill("Tides are caused mainly by the Moon's gravity, and partly by the Sun's.")
    page.keyboard.press("Escape")
    page.screenshot(path=str(shots / "annotate.png"), full_page=True)
    page.keyboard.press("Enter")

    expect(page.locator("#progress")).to_have_text("1 / 3")
    expect(page.locator("#message")).to_contain_text("The models were:")  # anonymous: revealed after the vote
    for m in models:
        expect(page.locator("#message")).to_contain_text(m)
    assert page.evaluate("window.marker") == 1, "the next task must load without a page reload"
    stored = judgments(live_server, cid)
    assert len(stored) == 1
    p = in_shown_ids(stored[0], texts1)
    assert p["ranking"] == [[b], [a], [c]]
    assert p["pairwise"] == {"a": a, "b": b, "choice": "b", "strength": "slightly_better"}
    assert p["ratings"] == {str(a): 6.0}
    assert p["thumbs"] == {str(a): True, str(b): False}
    assert p["critique"] == "B is the most faithful."
    assert p["edit"] == {
        "response_id": b,
        "text": "Tides are caused mainly by the Moon's gravity, and partly by the Sun's.",
    }

    # task 2 with the mouse: a partial ranking is refused, then rating 4 + thumbs up on A
    a2, b2, c2 = card_ids(page)
    texts2 = shown_texts(live_server, page, cid)
    assert a2 not in (a, b, c)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("Rank every response")
    page.keyboard.press("k")  # back to A; 0 clears its rank
    page.keyboard.press("0")
    page.click(f'.response[data-id="{a2}"] .rate[data-score="4"]')
    page.click(f'.response[data-id="{a2}"] .thumb-up')
    page.click("#submit")
    expect(page.locator("#progress")).to_have_text("2 / 3")
    assert len(judgments(live_server, cid)) == 2

    # undo: the previous task comes back pre-filled, and its judgment is gone from the API
    page.keyboard.press("z")
    expect(page.locator("#progress")).to_have_text("1 / 3")
    expect(page.locator("#message")).to_contain_text("undone")
    assert card_ids(page) == [a2, b2, c2]
    expect(page.locator(f'.response[data-id="{a2}"] .rate.selected')).to_have_text("4")
    assert [j["judgment_id"] for j in judgments(live_server, cid)] == [stored[0]["judgment_id"]]
    page.keyboard.press("Control+Enter")  # resubmit the restored answer (fresh idempotency key)
    expect(page.locator("#progress")).to_have_text("2 / 3")
    again = judgments(live_server, cid)
    assert len(again) == 2
    assert in_shown_ids(again[1], texts2) == {"ratings": {str(a2): 4.0}, "thumbs": {str(a2): True}}

    # skip the last task: nothing stored, the done panel appears
    page.keyboard.press("s")
    expect(page.locator("#progress")).to_have_text("3 / 3")
    expect(page.locator("#done-panel")).to_be_visible()
    assert len(judgments(live_server, cid)) == 2
    page.screenshot(path=str(shots / "annotate-done.png"), full_page=True)
    assert page.evaluate("window.marker") == 1
    assert page.dialogs == [] and page.errors == []


def rank_all(server: Any, cid: int, token: str, order: list[str]) -> int:
    """Submit rankings for every task of one annotator, best -> worst by model name."""
    n = 0
    with server.client(token) as c:
        while True:
            task = c.get(f"/api/campaigns/{cid}/next").json()["task"]
            if task is None:
                return n
            by_model = {}
            for r in c.get(f"/api/tasks/{task['task_id']}").json()["responses"]:
                by_model[r["model"]] = r["id"]
            groups = [[by_model[m]] for m in order]
            r = c.post(
                f"/api/tasks/{task['task_id']}/submit",
                json={"idempotency_key": f"k{task['task_id']}", "ranking": groups},
            )
            r.raise_for_status()
            n += 1


def test_leaderboard_and_report_pages(live_server: Any, page: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    models = ["alpha-7b", "beta-<b>bold</b>", "gamma-1b"]
    items = [
        {"prompt": f"p{i}", "responses": [{"text": f"r{i}{j}", "model": m} for j, m in enumerate(models)]}
        for i in range(4)
    ]
    names = ["ann1", "ann2", "ann3", "ann4"]
    camp = live_server.create_campaign(
        name="Arena",
        annotators=names,
        items=items,
        overlap=4,
        anonymous=False,
        feedback_types=["ranking", "pairwise"],
    )
    for name in names[:3]:
        assert rank_all(live_server, camp.id, camp.tokens[name], models) == 4
    assert rank_all(live_server, camp.id, camp.tokens["ann4"], models[::-1]) == 4  # the outlier

    login(page, live_server.base_url, "admin", live_server.admin_password)
    expect(page.locator(".campaign .button", has_text="Leaderboard")).to_be_visible()
    page.goto(f"{live_server.base_url}/leaderboard/{camp.id}")
    rows = page.locator("#leaderboard-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td.model")).to_have_text("alpha-7b")
    expect(rows.nth(1).locator("td.model")).to_have_text("beta-<b>bold</b>")  # a model name is text too
    expect(page.locator("#lb-summary")).to_contain_text("48 comparisons")  # 16 rankings x 3 pairs
    plot = page.locator("#plot svg")
    expect(plot).to_be_visible()
    expect(plot.locator("g.row")).to_have_count(3)
    expect(plot.locator("g.row circle.score")).to_have_count(3)
    expect(plot.locator("g.row text.label").nth(2)).to_have_text("gamma-1b")
    assert page.evaluate("document.querySelectorAll('#leaderboard-table b, #plot b').length") == 0
    page.screenshot(path=str(shots / "leaderboard.png"), full_page=True)

    page.click("#report-link")
    page.wait_for_url(f"{live_server.base_url}/report/{camp.id}")
    expect(page.locator("#annotator-table tbody tr")).to_have_count(4)
    flagged = page.locator("#annotator-table tbody tr.flagged")
    expect(flagged).to_have_count(1)
    expect(flagged.locator("td").first).to_have_text("ann4")
    expect(page.locator("#stat-cards")).to_contain_text("flagged annotators")
    expect(page.locator("#stat-cards")).to_contain_text("1 / 4")
    # only exports this ranking + pairwise campaign has data for
    expect(page.locator("#export-row button")).to_have_text(
        ["pairwise · raw", "pairwise · consensus", "ranked · raw", "ranked · consensus"]
    )
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    assert page.dialogs == [] and page.errors == []


def test_login_errors_pairwise_digits_and_retry_keeps_key(live_server: Any, page: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    base = live_server.base_url
    page.goto(base + "/annotate/1")  # no token: sent to the login page, remembering where to go
    page.wait_for_url(re.compile(r"/login\?next=%2Fannotate%2F1$"))
    page.fill("#login-name", "admin")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#message")).to_contain_text("wrong name or password")
    expect(page.locator("#message")).to_have_class(re.compile("error"))
    page.screenshot(path=str(shots / "login.png"), full_page=True)
    assert page.evaluate("localStorage.getItem('prefloop_token')") is None

    # a pairwise-only campaign: digits 1 / 2 pick A / B
    live_server.api(
        "POST",
        "/api/users",
        token=live_server.admin_token,
        json={"name": "bob", "role": "annotator", "password": "bob-password"},
    ).raise_for_status()
    camp = live_server.create_campaign(
        name="Pairs", annotators=["bob"], n_items=2, k=2, anonymous=False, feedback_types=["pairwise"]
    )
    # the first submission reaches the server, but its answer is lost on the way back (a dropped
    # connection): the page must retry with the same idempotency key, so exactly one judgment is stored
    keys: list[str] = []

    def flaky(route: Any) -> None:
        keys.append(json.loads(route.request.post_data)["idempotency_key"])
        if len(keys) == 1:
            route.fetch()  # delivered to the server ...
            route.abort("connectionreset")  # ... but the browser never hears back
        else:
            route.continue_()

    page.route("**/api/tasks/*/submit", flaky)
    page.fill("#login-name", "bob")
    page.fill("#login-password", "bob-password")
    page.click("#login-submit")
    page.wait_for_url(base + "/annotate/1")  # back where the redirect started
    expect(page.locator("#progress")).to_have_text("0 / 2")
    expect(page.locator(".model-name").first).to_have_text("model-0")  # not anonymous: names shown
    a, b = card_ids(page)
    texts = shown_texts(live_server, page, camp.id)
    page.keyboard.press("2")
    page.keyboard.press("q")
    expect(page.locator("#choice-b")).to_have_class(re.compile("selected"))
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("1 / 2")
    assert len(keys) == 2 and keys[0] == keys[1]
    page.keyboard.press("x")
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("2 / 2")
    assert len(keys) == 3 and keys[2] != keys[0]  # a new task gets a fresh key
    stored = judgments(live_server, camp.id)
    assert [j["payload"]["pairwise"]["choice"] for j in stored] == ["b", "both_bad"]
    assert in_shown_ids(stored[0], texts)["pairwise"] == {
        "a": a,
        "b": b,
        "choice": "b",
        "strength": "significantly_better",
    }
    assert page.dialogs == [] and page.errors == []
