"""The annotation UI in a real browser: Debian's Chromium driven by Playwright against a real server.

Never downloads a browser: skipped when /usr/bin/chromium is missing (`apt-get install chromium`).
Screenshots of every page go to $PREFLOOP_SCREENSHOTS (default: a pytest tmp dir).
"""

from __future__ import annotations

import json
import os
import re
import time
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


def test_keyboard_ranking_with_twelve_responses(live_server: Any, page: Any) -> None:
    """From 10 responses on, two digits typed in quick succession are one rank (1 0 = 10); a lone
    1 counts once the typing window has passed."""
    from playwright.sync_api import expect

    live_server.api(
        "POST",
        "/api/users",
        token=live_server.admin_token,
        json={"name": "kim", "role": "annotator", "password": "kim-password"},
    ).raise_for_status()
    items = [
        {"prompt": f"Twelve answers ({i})", "responses": [{"text": f"answer {j} ({i})"} for j in range(12)]}
        for i in range(2)
    ]
    camp = live_server.create_campaign(
        name="Twelve", annotators=["kim"], items=items, feedback_types=["ranking"], anonymous=False
    )
    login(page, live_server.base_url, "kim", "kim-password")
    page.goto(f"{live_server.base_url}/annotate/{camp.id}")
    expect(page.locator("#responses .response")).to_have_count(12)
    expect(page.locator("#shortcuts")).to_contain_text("1 0 = rank 10")
    ids = card_ids(page)
    # A=10 B=12 C=3 D=1 (lone 1: wait for the window) E=2 F..K=4..9 L=11
    page.keyboard.type("10")
    expect(page.locator(f'.response[data-id="{ids[0]}"] .rank.selected')).to_have_text("10")
    page.keyboard.type("12")
    page.keyboard.press("3")  # no two-digit rank starts with 3: taken at once
    expect(page.locator(f'.response[data-id="{ids[2]}"] .rank.selected')).to_have_text("3")
    page.keyboard.press("1")
    expect(page.locator(f'.response[data-id="{ids[3]}"] .rank-typing')).to_have_text("rank 1…")
    expect(page.locator(f'.response[data-id="{ids[3]}"] .rank.selected')).to_have_text(
        "1"
    )  # after the window
    for key in "2456789":
        page.keyboard.press(key)
    page.keyboard.type("11")
    expect(page.locator("#ranking-text")).to_have_text(
        "D  >  E  >  C  >  F  >  G  >  H  >  I  >  J  >  K  >  A  >  L  >  B"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("1 / 2")
    (j,) = judgments(live_server, camp.id)
    text_of = {
        r["id"]: r["text"] for r in j["responses"]
    }  # stored ids -> texts; cards show A..L in item order
    order = [3, 4, 2, 5, 6, 7, 8, 9, 10, 0, 11, 1]
    assert [[text_of[r] for r in g] for g in j["payload"]["ranking"]] == [[f"answer {i} (0)"] for i in order]
    # a lone 1 followed at once by another key: the 1 is taken before the key acts
    ids = card_ids(page)
    page.keyboard.press("1")
    page.keyboard.press("j")  # the rank goes to A (the highlight then moves on from B to C)
    expect(page.locator(f'.response[data-id="{ids[0]}"] .rank.selected')).to_have_text("1")
    expect(page.locator(".response.focused")).to_have_attribute("data-label", "C")
    expect(page.locator(".rank-typing:visible")).to_have_count(0)
    assert page.dialogs == [] and page.errors == []


MARKDOWN_RESPONSE = (
    "Use a **context manager**:\n\n```python\nwith open(path) as f:\n    data = f.read()\n```\n\n"
    "See [the docs](https://docs.python.org/3/) or [this](javascript:alert(1)).\n"
    '<img src=x onerror="alert(1)"> <b onmouseover="alert(2)">hover</b> ' + XSS
)


def test_admin_creates_campaign_by_upload_and_manages_it(
    live_server: Any, page: Any, shots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = live_server.base_url
    good = tmp_path / "samples.jsonl"
    good.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"How do I read a file in Python? ({i})",
                    "responses": [
                        {"text": MARKDOWN_RESPONSE, "model": "m-md"},
                        {"text": f"open it ({i})", "model": "m-short"},
                    ],
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "ok", "responses": ["a"]}\n{"prompt": "no responses"}\n')

    login(page, base, "admin", live_server.admin_password)
    page.click("#nav-admin")
    page.wait_for_url(base + "/admin")
    page.fill("#create-name", "Reading files")
    page.check('#create-types input[value="pairwise"]')
    page.fill("#create-overlap", "2")
    page.fill("#create-guidelines", "Prefer **correct** answers.\n\n- check the code\n- ignore style")
    page.fill("#create-annotators", "ann-x, ann-y")
    # a bad file: nothing is created, the error names file, line and field
    page.set_input_files("#create-files", [str(good), str(bad)])
    page.click("#create-submit")
    expect(page.locator("#message")).to_have_text(
        "broken.jsonl:2: field 'responses': missing (generate them with `prefloop generate --num-responses K`)"
    )
    assert live_server.api("GET", "/api/campaigns", token=live_server.admin_token).json() == []
    page.set_input_files("#create-files", [str(good)])
    page.click("#create-submit")
    expect(page.locator("#create-result")).to_contain_text("3 items, 6 tasks")
    tokens = {
        row.get_attribute("data-name"): row.locator("code.token").inner_text()
        for row in page.locator("#create-result tr").all()
    }
    assert set(tokens) == {"ann-x", "ann-y"}
    expect(page.locator("#campaign-table tbody tr")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "admin.png"), full_page=True)
    (camp,) = live_server.api("GET", "/api/campaigns", token=live_server.admin_token).json()
    assert (camp["feedback_types"], camp["overlap"], camp["n_items"]) == (["ranking", "pairwise"], 2, 3)

    # the campaign page: edit the guidelines, add an annotator, revoke a token
    page.click("#created-link")
    page.wait_for_url(f"{base}/admin/{camp['id']}")
    expect(page.locator("#guidelines-preview strong")).to_have_text("correct")
    page.fill("#settings-guidelines", "Prefer **correct** answers. Code must run:\n\n1. read it\n2. run it")
    page.click("#settings-submit")
    expect(page.locator("#message")).to_have_text("Settings saved.")
    expect(page.locator("#guidelines-preview ol li")).to_have_count(2)
    page.fill("#annotators-names", "ann-z")
    page.click("#annotators-submit")
    expect(page.locator("#token-result code.token")).to_have_count(1)
    expect(page.locator("#annotator-table tbody tr")).to_have_count(3)
    assert live_server.api("GET", "/api/me", token=tokens["ann-x"]).status_code == 200
    page.click('#annotator-table tr[data-name="ann-x"] .revoke-all')
    expect(page.locator("#message")).to_have_text("Revoked 1 token of ann-x.")
    assert live_server.api("GET", "/api/me", token=tokens["ann-x"]).status_code == 401
    expect(page.locator('#annotator-table tr[data-name="ann-x"] .token-count')).to_have_text("0 live")
    page.click('#annotator-table tr[data-name="ann-x"] .issue-token')
    expect(page.locator("#token-result")).to_contain_text("New token for ann-x")
    new_token = page.locator("#token-result code.token").inner_text()
    assert live_server.api("GET", "/api/me", token=new_token).status_code == 200
    page.click('#annotator-table tr[data-name="ann-y"] .token-count')
    expect(page.locator('#annotator-table tr[data-name="ann-y"] .token-row')).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "campaign.png"), full_page=True)
    page.click('#annotator-table tr[data-name="ann-y"] .revoke-one')
    expect(page.locator("#message")).to_have_text("Revoked 1 token of ann-y.")
    assert live_server.api("GET", "/api/me", token=tokens["ann-y"]).status_code == 401
    assert page.dialogs == [] and page.errors == []

    # the annotator sees the guidelines and the responses as Markdown, with no script anywhere
    page.click("#logout")
    page.wait_for_url(base + "/login")
    page.click("summary")
    page.fill("#login-token", new_token)
    page.click("#token-submit")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/annotate/{camp['id']}")
    expect(page.locator("#instructions strong")).to_have_text("correct")
    expect(page.locator("#instructions ol li")).to_have_count(2)
    md = page.locator(".response-text", has_text="context manager")
    expect(md.locator("strong")).to_have_text("context manager")
    expect(md.locator("pre code.language-python")).to_contain_text("with open(path) as f:")
    expect(md.locator('a[href="https://docs.python.org/3/"]')).to_have_attribute(
        "rel", "noopener noreferrer nofollow"
    )
    expect(md).to_contain_text(XSS)  # shown as text
    hostile = page.evaluate(
        """() => {
        const root = document.querySelector('#responses');
        const all = Array.from(root.querySelectorAll('*'));
        return {
          scripts: root.querySelectorAll('script, img, iframe, svg').length,
          handlers: all.filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
          jsLinks: all.filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || '')).length,
          bold: root.querySelectorAll('b').length,
        };
    }"""
    )
    assert hostile == {"scripts": 0, "handlers": 0, "jsLinks": 0, "bold": 0}
    page.hover("text=hover")
    page.screenshot(path=str(shots / "annotate-markdown.png"), full_page=True)
    # can't judge: the report is stored, the task skipped, the next one shown
    first = card_ids(page)
    page.keyboard.press("p")
    page.select_option("#problem-reason", "A response is unreadable or broken")
    page.fill("#problem-text", "response A is cut off")
    page.click("#problem-send")
    expect(page.locator("#message")).to_contain_text("Reported")
    assert card_ids(page) != first
    review = live_server.api(
        "GET", f"/api/campaigns/{camp['id']}/review", token=live_server.admin_token
    ).json()
    notes = [n for i in review["items"] for n in i["notes"]]
    assert [(n["kind"], n["author"], n["text"]) for n in notes] == [
        ("problem", "ann-x", "A response is unreadable or broken: response A is cut off")
    ]
    assert page.dialogs == [] and page.errors == []


def test_review_page_reject_leaves_export(live_server: Any, page: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    base = live_server.base_url
    items = [
        {
            "prompt": f"Name a primary colour ({i}).",
            "responses": [
                {"text": "**Red**", "model": "m-good"},
                {"text": "Green, I think.", "model": "m-ok"},
                {"text": "`Purple`", "model": "m-bad"},
            ],
        }
        for i in range(2)
    ]
    camp = live_server.create_campaign(
        name="Colours",
        annotators=["rita", "sam", "tess"],
        items=items,
        overlap=3,
        feedback_types=["ranking", "critique"],
    )

    def rank(name: str, order: list[int], critique: str | None = None) -> None:
        with live_server.client(camp.tokens[name]) as c:
            while (task := c.get(f"/api/campaigns/{camp.id}/next").json()["task"]) is not None:
                by_text = {r["text"]: r["id"] for r in task["responses"]}
                texts = [r["text"] for r in items[0]["responses"]]
                body: dict[str, Any] = {
                    "idempotency_key": f"{name}-{task['task_id']}",
                    "ranking": [[by_text[texts[k]]] for k in order],
                }
                if critique:
                    body["critique"] = critique
                c.post(f"/api/tasks/{task['task_id']}/submit", json=body).raise_for_status()

    rank("rita", [0, 1, 2], critique="Red is primary; purple is not.")
    rank("sam", [0, 1, 2])
    rank("tess", [2, 1, 0], critique="I like purple.")

    def exported_annotators() -> list[str]:
        r = live_server.api(
            "GET", f"/api/campaigns/{camp.id}/export?kind=ranked&mode=raw", token=live_server.admin_token
        )
        return sorted(json.loads(line)["meta"]["annotator"] for line in r.text.splitlines())

    assert exported_annotators() == ["rita", "rita", "sam", "sam", "tess", "tess"]
    login(page, base, "admin", live_server.admin_password)
    page.goto(f"{base}/review/{camp.id}")
    cards = page.locator("article.review-item")
    expect(cards).to_have_count(2)
    expect(cards.first.locator(".agreement")).to_have_text("agreement 33%")
    expect(cards.first.locator(".review-response .model-name")).to_have_text(["m-good", "m-ok", "m-bad"])
    expect(cards.first.locator(".review-response strong")).to_have_text("Red")  # Markdown
    expect(cards.first.locator("dd.critique")).to_have_text(
        ["Red is primary; purple is not.", "I like purple."]
    )
    # reject tess on the first item, accept rita
    first = cards.first
    first.locator('tr[data-annotator="tess"] button[data-review="rejected"]').click()
    expect(page.locator("#message")).to_contain_text("rejected")
    expect(page.locator("article.review-item").first.locator('tr[data-annotator="tess"]')).to_have_class(
        re.compile("review-rejected")
    )
    page.locator("article.review-item").first.locator(
        'tr[data-annotator="rita"] button[data-review="accepted"]'
    ).click()
    expect(
        page.locator("article.review-item").first.locator('tr[data-annotator="rita"] .review-state')
    ).to_have_text("accepted")
    assert exported_annotators() == ["rita", "rita", "sam", "sam", "tess"]  # the rejected one is gone
    # the first item now agrees fully; filter to low agreement: only the second is left
    expect(page.locator("article.review-item").first.locator(".agreement")).to_have_text("agreement 100%")
    page.select_option("#review-max-agreement", "0.5")
    page.click("#review-controls button[type=submit]")
    expect(page.locator("article.review-item")).to_have_count(1)
    item2 = page.locator("article.review-item").first
    item2.locator(".comment-text").fill("tess ranks backwards; check her other work")
    item2.locator(".comment-form button").click()
    expect(page.locator("#message")).to_have_text("Comment saved.")
    expect(page.locator("article.review-item .note-comment")).to_contain_text("check her other work")
    page.screenshot(path=str(shots / "review.png"), full_page=True)
    # by annotator
    page.select_option("#review-max-agreement", "")
    page.select_option("#review-by", "annotator")
    page.click("#review-controls button[type=submit]")
    expect(page.locator("section.review-annotator")).to_have_count(3)
    expect(page.locator('section.review-annotator[data-annotator="tess"] tr.review-rejected')).to_have_count(
        1
    )
    assert page.dialogs == [] and page.errors == []


def test_clip_pair_plays_and_a_choice_submits(live_server: Any, page: Any, shots: Path) -> None:
    """A clip item (two animated GIFs, as `prefloop control --teacher human` posts them): both clips
    load through the task's media URLs and animate; "Left is better" submits a pairwise choice for
    the left clip's response."""
    import io

    from PIL import Image
    from playwright.sync_api import expect

    def gif(c1: tuple[int, int, int], c2: tuple[int, int, int]) -> bytes:
        frames = [Image.new("RGB", (60, 40), c) for c in (c1, c2)]
        out = io.BytesIO()
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=150, loop=0)
        return out.getvalue()

    base, admin = live_server.base_url, live_server.admin_token
    live_server.api(
        "POST",
        "/api/users",
        token=admin,
        json={"name": "cleo", "role": "annotator", "password": "cleo-password"},
    ).raise_for_status()
    r = live_server.api(
        "POST", "/api/campaigns", token=admin,
        json={"name": "Clips", "feedback_types": ["pairwise"], "instructions": "Which agent balances the pole?"},
    )  # fmt: skip
    cid = r.json()["id"]
    clips = {"red": gif((220, 0, 0), (255, 255, 255)), "blue": gif((0, 0, 220), (255, 255, 0))}
    media = {
        name: live_server.api("POST", f"/api/campaigns/{cid}/media", token=admin, content=data).json()[
            "media_id"
        ]
        for name, data in clips.items()
    }
    item = {
        "prompt": "Which clip is better?",
        "responses": [{"media_id": media["red"]}, {"media_id": media["blue"]}],
    }
    live_server.api(
        "POST", f"/api/campaigns/{cid}/items", token=admin, json={"items": [item]}
    ).raise_for_status()
    live_server.api(
        "POST", f"/api/campaigns/{cid}/annotators", token=admin, json={"names": ["cleo"]}
    ).raise_for_status()

    login(page, base, "cleo", "cleo-password")
    page.goto(f"{base}/annotate/{cid}")
    images = page.locator("#responses img.clip")
    expect(images).to_have_count(2)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#responses img.clip'))"
        ".every(i => i.complete && i.naturalWidth === 60 && i.src.startsWith('blob:'))"
    )
    # it plays: the left clip's pixels change over time (two frames of 150 ms each)
    seen = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(images.first.screenshot())
        time.sleep(0.1)
    assert len(seen) >= 2, "the GIF did not animate"
    expect(page.locator("#pairwise-question")).to_contain_text("left or right")
    expect(page.locator("#choice-a")).to_contain_text("Left is better")
    expect(page.locator("#choice-tie")).to_contain_text("Equal")
    expect(page.locator("#choice-cant_tell")).to_be_visible()
    expect(page.locator("#choice-both_bad")).to_be_hidden()
    expect(page.locator("#strength-row")).to_be_hidden()
    page.screenshot(path=str(shots / "annotate-clips.png"), full_page=True)
    # which clip is on the left (the campaign is anonymous: the order is shuffled per task)
    token = page.evaluate("localStorage.getItem('prefloop_token')")
    task = live_server.api("GET", f"/api/campaigns/{cid}/next", token=token).json()["task"]
    left_bytes = live_server.api("GET", task["responses"][0]["media"]["url"], token=token).content
    left = next(name for name, data in clips.items() if data == left_bytes)

    page.click("#choice-a")
    expect(page.locator("#choice-a")).to_have_class(re.compile("selected"))
    page.click("#submit")
    expect(page.locator("#done-panel")).to_be_visible()
    (stored,) = judgments(live_server, cid)
    pw = stored["payload"]["pairwise"]
    media_of = {r["id"]: r["media_id"] for r in stored["responses"]}
    assert pw["choice"] == "a" and media_of[pw["a"]] == media[left]  # the left clip won
    # the admin's review page shows the same clips next to the judgment
    page.evaluate("localStorage.clear()")
    login(page, base, "admin", live_server.admin_password)
    page.goto(f"{base}/review/{cid}")
    expect(page.locator(".review-response img.clip")).to_have_count(2)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.review-response img.clip'))"
        ".every(i => i.complete && i.naturalWidth === 60)"
    )
    assert page.dialogs == [] and page.errors == []
