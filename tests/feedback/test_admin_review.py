"""Campaign administration and review over the API of a real server (module-scoped, SQLite):
create by upload, edit settings, tokens, accept / reject (and the exports), comments, problem
reports; plus the per-item agreement and the safe Markdown rendering as pure functions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prefloop.feedback.quality import item_agreement
from prefloop.feedback.rendering import render_markdown


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def spec(name: str, **extra: Any) -> str:
    return json.dumps({"name": name, "feedback_types": ["ranking", "critique"], "overlap": 2, **extra})


def n_campaigns(server: Any) -> int:
    return len(server.api("GET", "/api/campaigns", token=server.admin_token).json())


# ------------------------------------------------------------------ create by upload


def test_upload_creates_campaign_like_the_cli(module_server: Any, tmp_path: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = module_server
    a = jsonl([{"prompt": f"q{i}", "responses": [{"text": f"a{i}", "model": "m-a"}]} for i in range(3)])
    b = jsonl([{"prompt": f"q{i}", "responses": [{"text": f"b{i}", "model": "m-b"}]} for i in range(3)])
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "solo", "chosen": "yes", "rejected": "no"}]), tmp_path / "c.parquet"
    )
    files = [
        ("files", ("a.jsonl", a, "application/octet-stream")),
        ("files", ("b.jsonl", b, "application/octet-stream")),
        ("files", ("c.parquet", (tmp_path / "c.parquet").read_bytes(), "application/octet-stream")),
    ]
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=s.admin_token,
        data={"campaign": spec("uploaded"), "annotators": "up-ann1, up-ann2"},
        files=files,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    # equal prompts across the two files merge (3 items of 2 responses) + 1 parquet item
    assert out["items_created"] == 4
    assert out["campaign"]["n_items"] == 4 and out["campaign"]["overlap"] == 2
    assert out["campaign"]["n_tasks"] == 8  # 4 items x overlap 2, both annotators
    tokens = {x["name"]: x["token"] for x in out["annotators"]}
    cid = out["campaign"]["id"]
    task = s.api("GET", f"/api/campaigns/{cid}/next", token=tokens["up-ann1"]).json()["task"]
    assert len(task["responses"]) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            b'{"prompt": "x", "responses": ["a"]}\n{"prompt": "y"}\n',
            "bad.jsonl:2: field 'responses': missing",
        ),
        ("broken.jsonl", b'{"prompt": "x", "responses": ["a"]}\n{not json\n', "broken.jsonl:2"),
        ("notes.txt", b"hello", "notes.txt: unsupported file type"),
        ("../../etc/evil.jsonl", b'{"prompt": 3, "responses": ["a"]}\n', "evil.jsonl:1: field 'prompt"),
    ],
)
def test_upload_errors_name_file_line_field_and_store_nothing(
    module_server: Any, name: str, content: bytes, message: str
) -> None:
    s = module_server
    before = n_campaigns(s)
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=s.admin_token,
        data={"campaign": spec("never")},
        files=[("files", (name, content, "application/octet-stream"))],
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(message), r.json()["detail"]
    assert "prefloop-upload" not in r.json()["detail"]  # no server temp paths in messages
    assert n_campaigns(s) == before


def test_upload_rejects_bad_spec_and_annotators_and_needs_admin(module_server: Any) -> None:
    s = module_server
    good = [("files", ("ok.jsonl", jsonl([{"prompt": "p", "responses": ["a", "b"]}]), "text/plain"))]
    r = s.api("POST", "/api/campaigns/upload", token=s.admin_token, data={"campaign": "{"}, files=good)
    assert r.status_code == 422 and r.json()["detail"].startswith("campaign:")
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=s.admin_token,
        data={"campaign": spec("x", overlap=0)},
        files=good,
    )
    assert r.status_code == 422 and "overlap" in r.json()["detail"]
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=s.admin_token,
        data={"campaign": spec("x"), "annotators": "ok bad/name"},
        files=good,
    )
    assert r.status_code == 422 and "bad/name" in r.json()["detail"]
    camp = s.create_campaign(name="for-auth", annotators=["up-ann3"])
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=camp.tokens["up-ann3"],
        data={"campaign": spec("x")},
        files=good,
    )
    assert r.status_code == 403
    r = s.api("POST", "/api/campaigns/upload", data={"campaign": spec("x")}, files=good)
    assert r.status_code == 401


def test_add_items_by_upload(module_server: Any) -> None:
    s = module_server
    camp = s.create_campaign(name="grow", annotators=["grow-a"], n_items=1)
    r = s.api(
        "POST",
        f"/api/campaigns/{camp.id}/items/upload",
        token=s.admin_token,
        files=[("files", ("more.jsonl", jsonl([{"prompt": "p2", "responses": ["x", "y"]}]), "text/plain"))],
    )
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1 and r.json()["tasks_created"] == 1


# ------------------------------------------------------------------ settings and tokens


def test_patch_campaign_settings(module_server: Any) -> None:
    s = module_server
    camp = s.create_campaign(name="patch-me", annotators=["pa1", "pa2"], n_items=2, overlap=1)
    admin = s.admin_token
    assert s.api("GET", f"/api/campaigns/{camp.id}", token=admin).json()["n_tasks"] == 2
    r = s.api(
        "PATCH",
        f"/api/campaigns/{camp.id}",
        token=admin,
        json={"overlap": 2, "instructions": "Prefer **short** answers.", "name": "patched"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["n_tasks"] == 4 and r.json()["name"] == "patched"  # the extra overlap is handed out
    task = s.api("GET", f"/api/campaigns/{camp.id}/next", token=camp.tokens["pa1"]).json()["task"]
    assert task["instructions_html"] == "<p>Prefer <strong>short</strong> answers.</p>\n"
    for bad in (
        {"name": None},
        {"overlap": 0},
        {"feedback_types": []},
        {"color": "red"},
        {"rating_scale": [3, 1]},
    ):
        assert s.api("PATCH", f"/api/campaigns/{camp.id}", token=admin, json=bad).status_code == 422, bad
    assert (
        s.api("PATCH", f"/api/campaigns/{camp.id}", token=camp.tokens["pa1"], json={"overlap": 1}).status_code
        == 403
    )
    assert s.api("PATCH", "/api/campaigns/999999", token=admin, json={"overlap": 1}).status_code == 404
    annotators = s.api("GET", f"/api/campaigns/{camp.id}/annotators", token=admin).json()
    assert [(a["name"], a["progress"]["total"], a["tokens"]) for a in annotators] == [
        ("pa1", 2, 1),
        ("pa2", 2, 1),
    ]


def test_list_and_revoke_tokens(module_server: Any) -> None:
    s = module_server
    camp = s.create_campaign(name="tokens", annotators=["tok-a"])
    first = camp.tokens["tok-a"]
    second = s.api("POST", "/api/users/tok-a/tokens", token=s.admin_token).json()["token"]
    listed = s.api("GET", "/api/users/tok-a/tokens", token=s.admin_token).json()
    assert len(listed) == 2 and all(set(t) >= {"id", "created_at"} for t in listed)
    assert first not in json.dumps(listed) and second not in json.dumps(listed)
    r = s.api("DELETE", f"/api/users/tok-a/tokens/{listed[0]['id']}", token=s.admin_token)
    assert r.json() == {"name": "tok-a", "revoked": 1}
    assert s.api("GET", "/api/me", token=first).status_code == 401
    assert s.api("GET", "/api/me", token=second).status_code == 200
    assert (
        s.api("DELETE", f"/api/users/tok-a/tokens/{listed[0]['id']}", token=s.admin_token).status_code == 404
    )
    assert s.api("DELETE", "/api/users/tok-a/tokens", token=second).status_code == 403
    assert s.api("DELETE", "/api/users/tok-a/tokens", token=s.admin_token).json()["revoked"] == 1
    assert s.api("GET", "/api/me", token=second).status_code == 401
    assert s.api("GET", "/api/users/nobody/tokens", token=s.admin_token).status_code == 404


# ------------------------------------------------------------------ review


def rank_every_task(
    server: Any, cid: int, token: str, best_first: list[str], critique: str | None = None
) -> list[int]:
    ids = []
    with server.client(token) as c:
        while (task := c.get(f"/api/campaigns/{cid}/next").json()["task"]) is not None:
            full = server.api("GET", f"/api/campaigns/{cid}/judgments", token=server.admin_token)
            assert full.status_code == 200
            by_text = {r["text"].split()[-1]: r["id"] for r in task["responses"]}
            body: dict[str, Any] = {
                "idempotency_key": f"{token[:6]}-{task['task_id']}",
                "ranking": [[by_text[x]] for x in best_first],
            }
            if critique:
                body["critique"] = critique
            r = c.post(f"/api/tasks/{task['task_id']}/submit", json=body)
            r.raise_for_status()
            ids.append(r.json()["judgment_id"])
    return ids


def test_reject_leaves_exports_and_accept_keeps(module_server: Any) -> None:
    s = module_server
    items = [
        {"prompt": f"rv {i}", "responses": [{"text": f"ans {x}", "model": f"m{x}"} for x in "xyz"]}
        for i in range(2)
    ]
    camp = s.create_campaign(
        name="review",
        annotators=["rv1", "rv2", "rv3"],
        items=items,
        overlap=3,
        feedback_types=["ranking", "critique"],
    )
    j1 = rank_every_task(s, camp.id, camp.tokens["rv1"], ["x", "y", "z"], critique="x is right")
    rank_every_task(s, camp.id, camp.tokens["rv2"], ["x", "y", "z"])
    j3 = rank_every_task(s, camp.id, camp.tokens["rv3"], ["z", "y", "x"], critique="z wins")
    admin = s.admin_token

    def export() -> list[dict[str, Any]]:
        r = s.api("GET", f"/api/campaigns/{camp.id}/export?kind=ranked&mode=raw", token=admin)
        return [json.loads(line) for line in r.text.splitlines()]

    assert len(export()) == 6
    data = s.api("GET", f"/api/campaigns/{camp.id}/review?by=agreement", token=admin).json()
    # 3 pairs x 3 annotator pairs per item: rv1 and rv2 agree on all 3 pairs, rv3 disagrees with both
    # on every pair -> 3 agreeing of 9 = 1/3
    assert [round(i["agreement"], 4) for i in data["items"]] == [0.3333, 0.3333]
    first = data["items"][0]
    lines = {j["annotator"]: dict(map(tuple, j["lines"])) for j in first["judgments"]}
    assert lines["rv1"] == {"ranking": "A > B > C", "critique": "x is right"}  # critiques are shown
    assert lines["rv3"]["ranking"] == "C > B > A"
    assert [r["model"] for r in first["responses"]] == ["mx", "my", "mz"]  # the admin sees models

    for jid in j3:
        r = s.api("POST", f"/api/judgments/{jid}/review", token=admin, json={"review": "rejected"})
        assert r.json() == {"judgment_id": jid, "review": "rejected"}
    s.api(
        "POST", f"/api/judgments/{j1[0]}/review", token=admin, json={"review": "accepted"}
    ).raise_for_status()
    exported = export()
    assert len(exported) == 4 and "rv3" not in {r["meta"]["annotator"] for r in exported}
    critiques = s.api("GET", f"/api/campaigns/{camp.id}/export?kind=critique", token=admin).text.splitlines()
    assert [json.loads(x)["meta"]["annotator"] for x in critiques] == ["rv1", "rv1"]  # not rv3's "z wins"
    consensus = s.api(
        "GET", f"/api/campaigns/{camp.id}/export?kind=pairwise&mode=consensus", token=admin
    ).text
    assert len(consensus.splitlines()) == 6  # 2 items x 3 pairs, all x > y > z now
    assert s.api("GET", f"/api/campaigns/{camp.id}/report", token=admin).json()["n_judgments"] == 4
    data = s.api("GET", f"/api/campaigns/{camp.id}/review", token=admin).json()
    assert [i["agreement"] for i in data["items"]] == [1.0, 1.0]  # rejected ones do not count
    reviews = {j["annotator"]: j["review"] for j in data["items"][0]["judgments"]}
    assert reviews == {"rv1": "accepted", "rv2": None, "rv3": "rejected"}  # still listed here
    assert (
        s.api("GET", f"/api/campaigns/{camp.id}/review?max_agreement=0.5", token=admin).json()["total"] == 0
    )
    paged = s.api("GET", f"/api/campaigns/{camp.id}/review?limit=1&offset=1", token=admin).json()
    assert paged["total"] == 2 and [i["item_id"] for i in paged["items"]] == [data["items"][1]["item_id"]]
    html = s.api("GET", f"/api/campaigns/{camp.id}/review.html?limit=1&offset=1", token=admin).text
    assert 'data-offset="0"' in html  # the pager leads back to the first page
    by_annotator = s.api(
        "GET", f"/api/campaigns/{camp.id}/review?by=annotator&annotator=rv3", token=admin
    ).json()
    assert [a["name"] for a in by_annotator["annotators"]] == ["rv3"]
    # back to unreviewed: exported again
    s.api("POST", f"/api/judgments/{j3[0]}/review", token=admin, json={"review": None}).raise_for_status()
    assert len(export()) == 5
    for bad in ({"review": "maybe"}, {}, {"review": "rejected", "x": 1}):
        assert s.api("POST", f"/api/judgments/{j3[0]}/review", token=admin, json=bad).status_code == 422
    assert (
        s.api(
            "POST", f"/api/judgments/{j3[0]}/review", token=camp.tokens["rv1"], json={"review": None}
        ).status_code
        == 403
    )
    assert (
        s.api("POST", "/api/judgments/99999999/review", token=admin, json={"review": None}).status_code == 404
    )
    html = s.api("GET", f"/api/campaigns/{camp.id}/review.html", token=admin)
    assert html.status_code == 200 and "x is right" in html.text and 'data-review="rejected"' in html.text
    assert s.api("GET", f"/api/campaigns/{camp.id}/review.html", token=camp.tokens["rv1"]).status_code == 403


def test_problem_reports_and_comments(module_server: Any) -> None:
    s = module_server
    camp = s.create_campaign(name="problems", annotators=["pr1"], n_items=2, feedback_types=["ranking"])
    token = camp.tokens["pr1"]
    task = s.api("GET", f"/api/campaigns/{camp.id}/next", token=token).json()["task"]
    r = s.api(
        "POST",
        f"/api/tasks/{task['task_id']}/problem",
        token=token,
        json={"text": "the prompt is cut off <b>"},
    )
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    nxt = s.api("GET", f"/api/campaigns/{camp.id}/next", token=token).json()
    assert nxt["task"]["task_id"] != task["task_id"] and nxt["progress"]["skipped"] == 1
    assert (
        s.api("POST", f"/api/tasks/{task['task_id']}/problem", token=token, json={"text": "  "}).status_code
        == 422
    )
    assert (
        s.api(
            "POST", f"/api/tasks/{task['task_id']}/problem", token=s.admin_token, json={"text": "x"}
        ).status_code
        == 404
    )
    r = s.api(
        "POST", f"/api/items/{task['item_id']}/comments", token=s.admin_token, json={"text": "fix the prompt"}
    )
    assert r.status_code == 200
    assert (
        s.api("POST", f"/api/items/{task['item_id']}/comments", token=token, json={"text": "hi"}).status_code
        == 403
    )
    assert (
        s.api("POST", "/api/items/99999999/comments", token=s.admin_token, json={"text": "x"}).status_code
        == 404
    )
    data = s.api("GET", f"/api/campaigns/{camp.id}/review", token=s.admin_token).json()
    (item,) = data["items"]  # no judgment yet, but it has notes
    assert [(n["kind"], n["author"], n["text"]) for n in item["notes"]] == [
        ("problem", "pr1", "the prompt is cut off <b>"),
        ("comment", "admin", "fix the prompt"),
    ]
    html = s.api("GET", f"/api/campaigns/{camp.id}/review.html", token=s.admin_token).text
    assert "the prompt is cut off &lt;b&gt;" in html and "<b>" not in html


# ------------------------------------------------------------------ pure parts


def test_item_agreement_by_hand() -> None:
    def j(who: str, ranking: list[list[int]] | None = None, pairwise: dict | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if ranking:
            payload["ranking"] = ranking
        if pairwise:
            payload["pairwise"] = pairwise
        return {"annotator": who, "payload": payload}

    # one annotator: nothing to agree with
    assert item_agreement([j("a", [[1], [2]])]) is None
    # pairs (1,2), (1,3), (2,3); a: 1>2>3, b: 1>3>2 -> agree on (1,2), (1,3), not (2,3): 2/3
    assert item_agreement([j("a", [[1], [2], [3]]), j("b", [[1], [3], [2]])]) == pytest.approx(2 / 3)
    # a tie is its own outcome: a: 1=2, b: 1>2, c: 1=2 -> pairs (a,b) no, (a,c) yes, (b,c) no: 1/3
    assert item_agreement([j("a", [[1, 2]]), j("b", [[1], [2]]), j("c", [[1, 2]])]) == pytest.approx(1 / 3)
    # a pairwise choice counts as its pair: b chose 2 over 1 -> disagrees with a's ranking: 0/1
    assert item_agreement([j("a", [[1], [2]]), j("b", pairwise={"a": 1, "b": 2, "choice": "b"})]) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](  javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        '<img src=x onerror="alert(1)">',
        '<b onmouseover="alert(1)">hover</b>',
        "<iframe src=//evil.example></iframe>",
        '<div style="background:url(javascript:alert(1))">x</div>',
        "![x](javascript:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<svg onload=alert(1)>",
        "```html\n<script>alert(1)</script>\n```",
        "<!-- <script>alert(1)</script> -->",
    ],
)
def test_markdown_neutralizes_scripts_links_handlers_and_raw_html(text: str) -> None:
    """Parse the output as a browser would: only allow-listed tags, no event handlers or styles,
    links only to http(s)/mailto. Written markup may survive as escaped *text*, never as tags."""
    from html.parser import HTMLParser

    from prefloop.feedback.rendering import ALLOWED_TAGS

    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

        def handle_comment(self, data: str) -> None:
            found.append(("!--", []))

    Collect().feed(render_markdown(text))
    for tag, attrs in found:
        assert tag in ALLOWED_TAGS, (tag, text)
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", (tag, name, text)
            if name in ("href", "src"):
                assert (value or "").split(":")[0] in ("http", "https", "mailto"), (value, text)


def test_markdown_keeps_formatting_and_code() -> None:
    assert (
        render_markdown("**bold** and `x < y`") == "<p><strong>bold</strong> and <code>x &lt; y</code></p>\n"
    )
    assert render_markdown("```python\nif a < b:\n    pass\n```") == (
        '<pre><code class="language-python">if a &lt; b:\n    pass\n</code></pre>\n'
    )
    assert render_markdown("[docs](https://example.com)") == (
        '<p><a href="https://example.com" rel="noopener noreferrer nofollow">docs</a></p>\n'
    )
    assert render_markdown('```x" onclick="y\ncode\n```').count("onclick") <= 1
    assert 'class="language-x"' not in render_markdown('```x" onclick="y\ncode\n```')


@pytest.mark.postgres
def test_upload_review_and_export_on_postgres(server_factory: Any, pg_url: str) -> None:
    """The same path on PostgreSQL: create by upload, judge, reject one, the export leaves it out."""
    s = server_factory(pg_url)
    items = jsonl([{"prompt": f"pg {i}", "responses": [f"pg ans {x}" for x in "xyz"]} for i in range(2)])
    r = s.api(
        "POST",
        "/api/campaigns/upload",
        token=s.admin_token,
        data={"campaign": spec("pg"), "annotators": "pg1 pg2"},
        files=[("files", ("pg.jsonl", items, "text/plain"))],
    )
    assert r.status_code == 200, r.text
    cid = r.json()["campaign"]["id"]
    tokens = {a["name"]: a["token"] for a in r.json()["annotators"]}
    s.tokens.update(tokens)
    first = rank_every_task(s, cid, tokens["pg1"], ["x", "y", "z"], critique="fine")
    rank_every_task(s, cid, tokens["pg2"], ["z", "y", "x"])
    r = s.api("POST", f"/api/judgments/{first[0]}/review", token=s.admin_token, json={"review": "rejected"})
    assert r.status_code == 200
    lines = s.api("GET", f"/api/campaigns/{cid}/export?kind=ranked", token=s.admin_token).text.splitlines()
    assert len(lines) == 3 and first[0] not in [json.loads(x)["meta"]["judgment_id"] for x in lines]
    task = s.api(
        "POST",
        f"/api/campaigns/{cid}/items/upload",
        token=s.admin_token,
        files=[("files", ("more.jsonl", items, "text/plain"))],
    )
    assert task.json()["created"] == 2
    data = s.api("GET", f"/api/campaigns/{cid}/review?by=agreement", token=s.admin_token).json()
    assert data["total"] == 2 and {j["review"] for i in data["items"] for j in i["judgments"]} == {
        None,
        "rejected",
    }


def test_annotator_list_counts_only_live_tokens(server_factory: Any) -> None:
    import time

    s = server_factory(extra_args=("--token-ttl-hours", "0.0005"))  # tokens live 1.8 s
    camp = s.create_campaign(name="ttl", annotators=["ttl-a"])

    def count() -> int:
        return s.api("GET", f"/api/campaigns/{camp.id}/annotators", token=s.admin_token).json()[0]["tokens"]

    assert count() == 1
    time.sleep(2.0)
    # the admin's own token expired too: log in again
    r = s.api("POST", "/api/login", json={"name": "admin", "password": s.admin_password})
    s.admin_token = r.json()["token"]
    assert count() == 0
    tokens = s.api("GET", "/api/users/ttl-a/tokens", token=s.admin_token).json()
    assert [t["expired"] for t in tokens] == [True]
    s.api("POST", "/api/users/ttl-a/tokens", token=s.admin_token).raise_for_status()
    assert count() == 1


def test_problem_report_hands_the_item_to_another_annotator(module_server: Any) -> None:
    """A "can't judge" report skips the task like the skip button: the item still reaches overlap 1."""
    s = module_server
    camp = s.create_campaign(name="handover", annotators=["ho1", "ho2"], n_items=1, overlap=1)
    tasks = {
        n: s.api("GET", f"/api/campaigns/{camp.id}/next", token=camp.tokens[n]).json()["task"]
        for n in ("ho1", "ho2")
    }
    holder = next(n for n, t in tasks.items() if t is not None)
    other = "ho2" if holder == "ho1" else "ho1"
    assert tasks[other] is None
    r = s.api(
        "POST",
        f"/api/tasks/{tasks[holder]['task_id']}/problem",
        token=camp.tokens[holder],
        json={"text": "unclear"},
    )
    assert r.status_code == 200
    handed = s.api("GET", f"/api/campaigns/{camp.id}/next", token=camp.tokens[other]).json()["task"]
    assert handed is not None and handed["item_id"] == tasks[holder]["item_id"]
