"""The REST API against a real server process: workflow, anonymity, undo, access rules, bad input."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

ServerProcess = Any  # tests/feedback/conftest.py's server (used through the live_server fixture)


def _next(server: ServerProcess, token: str, cid: int) -> dict[str, Any]:
    r = server.api("GET", f"/api/campaigns/{cid}/next", token)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(task: dict[str, Any]) -> list[int]:
    return [r["id"] for r in task["responses"]]


def _db_path(server: ServerProcess) -> Path:
    return Path(server.db_url.split("///", 1)[1])


def snapshot(server: ServerProcess) -> dict[str, list[tuple]]:
    """Every row of every table (read through a second connection while the server runs)."""
    conn = sqlite3.connect(f"file:{_db_path(server)}?mode=ro", uri=True)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


@pytest.fixture
def server(module_server: ServerProcess) -> ServerProcess:
    """One server for the module; each test uses its own annotator names and campaigns."""
    return module_server


# ---------------------------------------------------------------------------------------------
# Workflow


def test_annotation_workflow_next_submit_skip_undo(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["wf_alice"], n_items=3, k=3, anonymous=False)
    tok = camp.tokens["wf_alice"]
    assert server.api("GET", "/api/me", tok).json() == {"name": "wf_alice", "role": "annotator"}
    listed = server.api("GET", "/api/campaigns", tok).json()
    assert [c["id"] for c in listed] == [camp.id] and listed[0]["progress"]["total"] == 3

    first = _next(server, tok, camp.id)
    assert first["progress"] == {"done": 0, "submitted": 0, "skipped": 0, "total": 3}
    task = first["task"]
    assert [r["model"] for r in task["responses"]] == ["model-0", "model-1", "model-2"]  # not anonymous
    a, b, c = _ids(task)
    body = {
        "idempotency_key": "k-1",
        "ranking": [[b], [a, c]],
        "critique": "b is clearest",
        "pairwise": {"a": a, "b": b, "choice": "b", "strength": "slightly_better"},
    }
    r = server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body)
    assert r.status_code == 200, r.text
    jid = r.json()["judgment_id"]

    second = _next(server, tok, camp.id)
    assert second["progress"]["done"] == 1 and second["task"]["task_id"] != task["task_id"]
    r = server.api("POST", f"/api/tasks/{second['task']['task_id']}/skip", tok)
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    third = _next(server, tok, camp.id)
    assert third["progress"] == {"done": 2, "submitted": 1, "skipped": 1, "total": 3}

    # Undo takes back the last action first: the skip (the task is pending again) ...
    r = server.api("POST", f"/api/campaigns/{camp.id}/undo", tok)
    assert r.status_code == 200, r.text
    assert r.json()["undone"] == "skip" and r.json()["task"]["task_id"] == second["task"]["task_id"]
    assert _next(server, tok, camp.id)["progress"] == {"done": 1, "submitted": 1, "skipped": 0, "total": 3}
    # ... then the submission: back with what was sent, and dropped from the results.
    r = server.api("POST", f"/api/campaigns/{camp.id}/undo", tok)
    assert r.status_code == 200, r.text
    undone = r.json()
    assert undone["undone"] == "submission"
    assert undone["task"]["task_id"] == task["task_id"] and undone["undone_judgment_id"] == jid
    assert undone["previous"]["ranking"] == [[b], [a, c]]
    assert server.api("GET", f"/api/campaigns/{camp.id}/judgments", server.admin_token).json() == []
    assert _next(server, tok, camp.id)["task"]["task_id"] == task["task_id"]
    r = server.api("POST", f"/api/campaigns/{camp.id}/undo", tok)
    assert r.status_code == 409 and "nothing to undo" in r.json()["detail"]
    # Answer again with a new key.
    r = server.api(
        "POST",
        f"/api/tasks/{task['task_id']}/submit",
        tok,
        json={"idempotency_key": "k-2", "ranking": [[a], [b], [c]]},
    )
    assert r.status_code == 200 and r.json()["judgment_id"] != jid
    stored = server.api("GET", f"/api/campaigns/{camp.id}/judgments", server.admin_token).json()
    # Stored with database ids (the annotator's ids are per-task aliases): map back by text.
    real = {r["text"]: r["id"] for r in stored[0]["responses"]}
    shown = {r["id"]: real[r["text"]] for r in task["responses"]}
    assert [j["payload"] for j in stored] == [{"ranking": [[shown[a]], [shown[b]], [shown[c]]]}]


def test_anonymous_hides_models_until_submitted(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["an_alice"], n_items=2, k=3, anonymous=True)
    tok = camp.tokens["an_alice"]
    task = _next(server, tok, camp.id)["task"]
    assert all(r["model"] is None for r in task["responses"])
    again = _next(server, tok, camp.id)["task"]
    assert again["responses"] == task["responses"]  # shuffled order is stable per task
    ids = _ids(task)
    r = server.api(
        "POST",
        f"/api/tasks/{task['task_id']}/submit",
        tok,
        json={"idempotency_key": "x", "ranking": [[i] for i in ids]},
    )
    revealed = r.json()["revealed_models"]
    texts = {rr["id"]: rr["text"] for rr in task["responses"]}
    # make_items: text "item i answer j" comes from model-j
    assert {int(k): v for k, v in revealed.items()} == {i: f"model-{texts[i][-1]}" for i in ids}


def test_idempotent_submit_returns_first_result(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["id_alice"], n_items=2, k=2)
    tok = camp.tokens["id_alice"]
    task = _next(server, tok, camp.id)["task"]
    a, b = _ids(task)
    body = {"idempotency_key": "same", "pairwise": {"a": a, "b": b, "choice": "a", "strength": "better"}}
    first = server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body).json()
    again = server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body).json()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["judgment_id"] == first["judgment_id"]
    other = _next(server, tok, camp.id)["task"]
    r = server.api("POST", f"/api/tasks/{other['task_id']}/submit", tok, json=body)
    assert r.status_code == 409 and "idempotency_key" in r.json()["detail"]
    assert len(server.api("GET", f"/api/campaigns/{camp.id}/judgments", server.admin_token).json()) == 1


def test_login_with_password_and_pages(server: ServerProcess) -> None:
    admin = server.admin()
    r = admin.post("/api/users", json={"name": "lg_dora", "role": "annotator", "password": "dora-password"})
    assert r.status_code == 200 and r.json()["token"]
    r0_token = r.json()["token"]
    assert admin.post("/api/users", json={"name": "lg_dora", "role": "annotator"}).status_code == 409
    r = server.api("POST", "/api/login", json={"name": "lg_dora", "password": "dora-password"})
    assert r.status_code == 200 and r.json()["role"] == "annotator"
    assert server.api("GET", "/api/me", r.json()["token"]).json()["name"] == "lg_dora"
    bad = server.api("POST", "/api/login", json={"name": "lg_dora", "password": "wrong-password"})
    assert bad.status_code == 401 and bad.json()["detail"] == "wrong name or password"
    assert {"admin", "lg_dora"} <= {u["name"] for u in admin.get("/api/users").json()}
    session = r.json()["token"]
    extra = admin.post("/api/users/lg_dora/tokens").json()["token"]
    assert server.api("GET", "/api/me", extra).json()["name"] == "lg_dora"
    assert admin.post("/api/users/nobody/tokens").status_code == 404
    assert server.api("POST", "/api/users/lg_dora/tokens", extra).status_code == 403
    assert server.api("POST", "/api/logout", session).json() == {"ok": True}
    assert server.api("GET", "/api/me", session).status_code == 401  # revoked
    assert server.api("GET", "/api/me", r0_token).status_code == 200  # other tokens still work
    for path in ("/login", "/", "/annotate/1", "/leaderboard/1", "/report/1"):
        page = server.api("GET", path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
    spec = server.api("GET", "/openapi.json").json()
    assert "/api/tasks/{task_id}/submit" in spec["paths"] and "/api/campaigns/{cid}/export" in spec["paths"]
    assert server.api("GET", "/docs").status_code == 200


# ---------------------------------------------------------------------------------------------
# Access


def test_access_rules_for_every_endpoint(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["ac_alice", "ac_bob"], n_items=4, k=2, overlap=1)
    alice, bob = camp.tokens["ac_alice"], camp.tokens["ac_bob"]
    carol = server.admin().post("/api/users", json={"name": "ac_carol"}).json()["token"]
    cid = camp.id
    a_task = _next(server, alice, cid)["task"]
    b_task = _next(server, bob, cid)["task"]
    assert a_task["item_id"] != b_task["item_id"]
    b_ids = _ids(b_task)
    submit_b = {"idempotency_key": "evil", "ranking": [[i] for i in b_ids]}

    admin_only = [
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"name": "mallory"}),
        ("POST", "/api/users/ac_bob/tokens", None),
        ("POST", "/api/campaigns", {"name": "x", "feedback_types": ["ranking"]}),
        ("POST", f"/api/campaigns/{cid}/annotators", {"names": ["ac_alice"]}),
        ("POST", f"/api/campaigns/{cid}/items", {"items": server.make_items(1)}),
        ("GET", f"/api/campaigns/{cid}/judgments", None),
        ("GET", f"/api/campaigns/{cid}/report", None),
        ("GET", f"/api/campaigns/{cid}/leaderboard", None),
        ("GET", f"/api/campaigns/{cid}/leaderboard.png", None),
        ("GET", f"/api/campaigns/{cid}/export?kind=pairwise", None),
    ]
    annotator_endpoints = [
        ("GET", "/api/me", None),
        ("GET", "/api/campaigns", None),
        ("GET", f"/api/campaigns/{cid}", None),
        ("GET", f"/api/campaigns/{cid}/next", None),
        ("GET", f"/api/tasks/{b_task['task_id']}", None),
        ("POST", f"/api/tasks/{b_task['task_id']}/submit", submit_b),
        ("POST", f"/api/tasks/{b_task['task_id']}/skip", None),
        ("POST", f"/api/campaigns/{cid}/undo", None),
    ]
    before = snapshot(server)
    for method, path, body in admin_only + annotator_endpoints:
        r = server.api(method, path, None, json=body)
        assert r.status_code == 401, (method, path, r.text)
        r = server.api(method, path, "not-a-real-token", json=body)
        assert r.status_code == 401, (method, path, r.text)
    for method, path, body in admin_only:
        r = server.api(method, path, alice, json=body)
        assert r.status_code == 403 and r.json()["detail"] == "admin role required", (method, path, r.text)
    # Another annotator's task: indistinguishable from a task that does not exist.
    for method, suffix, body in [("GET", "", None), ("POST", "/submit", submit_b), ("POST", "/skip", None)]:
        r = server.api(method, f"/api/tasks/{b_task['task_id']}{suffix}", alice, json=body)
        assert r.status_code == 404 and r.json()["detail"] == f"task {b_task['task_id']} not found"
    # Someone outside the campaign sees nothing of it.
    assert server.api("GET", "/api/campaigns", carol).json() == []
    for method, path in [
        ("GET", f"/api/campaigns/{cid}"),
        ("GET", f"/api/campaigns/{cid}/next"),
        ("POST", f"/api/campaigns/{cid}/undo"),
    ]:
        r = server.api(method, path, carol)
        assert r.status_code == 404 and r.json()["detail"] == f"campaign {cid} not found"
    assert snapshot(server) == before  # nothing above changed a row

    # Alice's undo never touches Bob's submission; /next never serves Bob's items to Alice.
    r = server.api("POST", f"/api/tasks/{b_task['task_id']}/submit", bob, json=submit_b)
    assert r.status_code == 200
    assert server.api("POST", f"/api/campaigns/{cid}/undo", alice).status_code == 409
    assert len(server.api("GET", f"/api/campaigns/{cid}/judgments", server.admin_token).json()) == 1
    seen_a = set()
    while (t := _next(server, alice, cid)["task"]) is not None:
        seen_a.add(t["item_id"])
        server.api("POST", f"/api/tasks/{t['task_id']}/skip", alice)
    assert b_task["item_id"] not in seen_a and len(seen_a) == 2


def test_tokens_and_passwords_are_stored_hashed(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["hs_alice"], n_items=1)
    admin = server.admin()
    dora = admin.post("/api/users", json={"name": "hs_dora", "password": "a-secret-password"}).json()["token"]
    login = server.api("POST", "/api/login", json={"name": "hs_dora", "password": "a-secret-password"}).json()
    secrets_ = [
        camp.tokens["hs_alice"],
        dora,
        login["token"],
        server.admin_token,
        "a-secret-password",
        server.admin_password,
    ]
    db = _db_path(server)
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # db, -wal, -shm
    for s in secrets_:
        assert s.encode() not in raw, "a secret is stored in clear"
    rows = snapshot(server)
    digests = {r[2] for r in rows["api_tokens"]}
    assert hashlib.sha256(camp.tokens["hs_alice"].encode()).hexdigest() in digests
    assert all(r[3] is None or r[3].startswith("scrypt$") for r in rows["users"])


# ---------------------------------------------------------------------------------------------
# Bad input


def test_malformed_input_is_rejected_with_a_clear_message_and_changes_nothing(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["bad_alice"], n_items=2, k=3, rating_scale=(1, 5))
    only_ranking = server.create_campaign(
        name="r", annotators=["bad_alice"], n_items=1, feedback_types=["ranking"]
    )
    tok = camp.tokens["bad_alice"]
    task = _next(server, tok, camp.id)["task"]
    x, y, z = _ids(task)
    other_item = server.api("GET", f"/api/campaigns/{camp.id}/judgments", server.admin_token)
    assert other_item.status_code == 200
    w = max(x, y, z) + 1  # a response of another item
    tid = task["task_id"]
    r_task = _next(server, tok, only_ranking.id)["task"]

    def sub(extra: dict[str, Any]) -> dict[str, Any]:
        return {"idempotency_key": "bad", **extra}

    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", f"/api/tasks/{tid}/submit", sub({"ranking": [[x], [x], [y, z]]}), 422, "more than once"),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"ranking": [[x], [y]]}),
            422,
            f"missing response id(s) [{z}]",
        ),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"ranking": [[x], [y], [z], [w]]}),
            422,
            f"unknown response id(s) [{w}]",
        ),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ranking": [[x], [], [y, z]]}), 422, "empty group"),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ranking": [["best"]]}), 422, "ranking"),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"ratings": {str(x): 6}}),
            422,
            "outside the rating scale [1, 5]",
        ),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"ratings": {str(x): 0.5}}),
            422,
            "outside the rating scale",
        ),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ratings": {str(w): 3}}), 422, "unknown response id"),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ratings": {}}), 422, "ratings: empty"),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"pairwise": {"a": x, "b": x, "choice": "a"}}),
            422,
            "two different",
        ),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"pairwise": {"a": x, "b": y, "choice": "c"}}),
            422,
            "choice",
        ),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"pairwise": {"a": x, "b": y, "choice": "tie", "strength": "better"}}),
            422,
            "strength",
        ),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"pairwise": {"a": x, "b": w, "choice": "a"}}),
            422,
            "unknown response id",
        ),
        ("POST", f"/api/tasks/{tid}/submit", sub({"thumbs": {str(x): "maybe"}}), 422, "thumbs"),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ratings": {str(x): True}}), 422, "ratings"),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ranking": [[str(x)], [y], [z]]}), 422, "ranking"),
        (
            "POST",
            f"/api/tasks/{tid}/submit",
            sub({"edit": {"response_id": w, "text": "better"}}),
            422,
            "edit: unknown",
        ),
        ("POST", f"/api/tasks/{tid}/submit", sub({"critique": "   "}), 422, "critique: empty"),
        ("POST", f"/api/tasks/{tid}/submit", sub({}), 422, "empty submission"),
        ("POST", f"/api/tasks/{tid}/submit", {"ranking": [[x], [y], [z]]}, 422, "idempotency_key"),
        ("POST", f"/api/tasks/{tid}/submit", sub({"ranking": [[x], [y], [z]], "vote": 1}), 422, "vote"),
        ("POST", f"/api/tasks/{tid}/submit", "not json", 422, "invalid request"),
        ("POST", "/api/tasks/999999/submit", sub({"ranking": [[x], [y], [z]]}), 404, "task 999999 not found"),
        (
            "POST",
            f"/api/tasks/{r_task['task_id']}/submit",
            sub({"ratings": {str(r_task["responses"][0]["id"]): 3}}),
            422,
            "'rating' is not enabled",
        ),
    ]
    admin_cases: list[tuple[str, str, Any, int, str]] = [
        (
            "POST",
            "/api/campaigns",
            {"name": "c", "feedback_types": ["ranking"], "rating_scale": [5, 1]},
            422,
            "lo < hi",
        ),
        ("POST", "/api/campaigns", {"name": "c", "feedback_types": ["vibes"]}, 422, "feedback_types"),
        (
            "POST",
            "/api/campaigns",
            {"name": "c", "feedback_types": ["ranking"], "overlap": 0},
            422,
            "overlap",
        ),
        ("POST", "/api/campaigns", {"name": "c", "feedback_types": []}, 422, "feedback_types"),
        (
            "POST",
            f"/api/campaigns/{camp.id}/items",
            {"items": [{"prompt": "p", "responses": []}]},
            422,
            "responses",
        ),
        (
            "POST",
            f"/api/campaigns/{camp.id}/items",
            {"items": [{"prompt": "p", "responses": [{"text": "a"}], "gold": {"chosen": 3}}]},
            422,
            "gold.chosen",
        ),
        (
            "POST",
            f"/api/campaigns/{camp.id}/items",
            {"items": server.make_items(1) + [{"prompt": "p"}]},
            422,
            "responses",
        ),  # one bad item: none stored
        (
            "POST",
            "/api/campaigns/9999/items",
            {"items": server.make_items(1)},
            404,
            "campaign 9999 not found",
        ),
        (
            "POST",
            f"/api/campaigns/{camp.id}/annotators",
            {"names": ["has space"]},
            422,
            "user name",
        ),
        ("GET", f"/api/campaigns/{camp.id}/export?kind=everything", None, 422, "kind"),
        ("POST", "/api/users", {"name": "eve", "role": "root"}, 422, "role"),
    ]
    before = snapshot(server)
    for method, path, body, status, needle in cases + admin_cases:
        token = tok if (method, path, body, status, needle) in cases else server.admin_token
        kwargs = {"content": body} if isinstance(body, str) else {"json": body}
        r = server.api(method, path, token, **kwargs)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and needle in detail, (body, detail)
    assert snapshot(server) == before


# ---------------------------------------------------------------------------------------------
# Results: export, report, leaderboard


def _submit(server: ServerProcess, tok: str, cid: int, make_body) -> None:
    while (task := _next(server, tok, cid)["task"]) is not None:
        body = make_body(task)
        r = server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body)
        assert r.status_code == 200, r.text


def _by_model(task: dict[str, Any]) -> dict[str, int]:
    return {f"model-{r['text'][-1]}": r["id"] for r in task["responses"]}


def test_export_every_kind_reads_back_as_training_data(server: ServerProcess, tmp_path: Path) -> None:
    io = pytest.importorskip("prefloop.data.io")
    camp = server.create_campaign(annotators=["ex_alice", "ex_bob", "ex_cara"], n_items=2, k=3, overlap=3)

    def body_for(name: str):
        def make(task: dict[str, Any]) -> dict[str, Any]:
            m = _by_model(task)
            order = (
                ["model-0", "model-1", "model-2"] if name != "ex_cara" else ["model-1", "model-0", "model-2"]
            )
            return {
                "idempotency_key": f"{name}-{task['task_id']}",
                "ranking": [[m[order[0]]], [m[order[1]]], [m[order[2]]]],
                "pairwise": {
                    "a": m["model-0"],
                    "b": m["model-2"],
                    "choice": "a",
                    "strength": "significantly_better",
                },
                "ratings": {str(m["model-0"]): 6, str(m["model-2"]): 2},
                "thumbs": {str(m["model-0"]): True, str(m["model-2"]): name == "ex_cara"},
                "edit": {"response_id": m["model-1"], "text": f"edited by {name}"},
                "critique": "fine",
            }

        return make

    for name in ("ex_alice", "ex_bob", "ex_cara"):
        _submit(server, camp.tokens[name], camp.id, body_for(name))
    admin = server.admin()

    def export(kind: str, mode: str = "raw", read_kind: str | None = None) -> list:
        r = admin.get(f"/api/campaigns/{camp.id}/export", params={"kind": kind, "mode": mode})
        assert r.status_code == 200, r.text
        path = tmp_path / f"{kind}-{mode}.jsonl"
        path.write_text(r.text)
        return io.read_records(path, kind=read_kind or kind)

    pairs = export("pairwise")
    assert len(pairs) == 6  # 3 annotators x 2 items, one pair each
    assert all(
        p.margin == 3.0 and p.chosen.endswith("answer 0") and p.rejected.endswith("answer 2") for p in pairs
    )
    ranked = export("ranked")
    assert len(ranked) == 6 and sorted(ranked[0].ranks) == [0, 1, 2]
    binary = export("binary")
    assert len(binary) == 12 and sum(b.desirable for b in binary) == 8
    ratings = export("rating")
    assert sorted({r.score for r in ratings}) == [2.0, 6.0]
    demos = export("demonstration")
    assert sorted(d.response for d in demos) == sorted(
        [f"edited by {n}" for n in ("ex_alice", "ex_bob", "ex_cara")] * 2
    )
    assert len(export("ranked", read_kind="pairwise")) == 18  # K=3 rankings expand to 3 pairs each

    # Consensus: two of three annotators put model-0 first, so model-0 > model-1 > model-2.
    consensus = export("ranked", "consensus")
    assert len(consensus) == 2
    for rec in consensus:
        best = rec.responses[rec.ranks.index(0)]
        assert best.endswith("answer 0") and rec.responses[rec.ranks.index(2)].endswith("answer 2")
    assert len(export("pairwise", "consensus")) == 6
    cons_bin = export("binary", "consensus")
    assert len(cons_bin) == 4 and sum(b.desirable for b in cons_bin) == 2  # model-2: 1 up of 3 -> down
    assert sorted(r.score for r in export("rating", "consensus")) == [2.0, 2.0, 6.0, 6.0]


def test_report_and_leaderboard(server: ServerProcess) -> None:
    pytest.importorskip("prefloop.feedback.quality")
    items = server.make_items(4, 2)
    items[0]["gold"] = {"chosen": 0}
    camp = server.create_campaign(
        annotators=["rp_alice", "rp_bob"], items=items, overlap=2, feedback_types=["pairwise"]
    )
    for name in ("rp_alice", "rp_bob"):

        def make(task: dict[str, Any], name: str = name) -> dict[str, Any]:
            m = _by_model(task)
            return {
                "idempotency_key": f"{name}-{task['task_id']}",
                "pairwise": {"a": m["model-0"], "b": m["model-1"], "choice": "a", "strength": "better"},
            }

        _submit(server, camp.tokens[name], camp.id, make)
    admin = server.admin()
    report = admin.get(f"/api/campaigns/{camp.id}/report").json()
    assert report["n_judgments"] == 8 and report["n_items"] == 4
    assert {a["name"] for a in report["annotators"]} == {"rp_alice", "rp_bob"}
    assert report["percent_agreement_pairs"] == 1.0
    board = admin.get(f"/api/campaigns/{camp.id}/leaderboard", params={"n_bootstrap": 20}).json()
    assert board["n_comparisons"] == 8 and board["elo"][0]["model"] == "model-0"
    png = admin.get(f"/api/campaigns/{camp.id}/leaderboard.png", params={"n_bootstrap": 0})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
