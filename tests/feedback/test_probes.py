"""Probes: every endpoint of the OpenAPI schema x every role, and a table of bad inputs, on a real
server over SQLite and PostgreSQL. Nothing answers 5xx; each role gets the 4xx its access rules
say; every bad input is a 4xx with a message and changes nothing.

Roles: anonymous (no token), annotator (member of the campaign, owner of the task), other
annotator (not a member), admin (not an annotator of the campaign).
"""

from __future__ import annotations

from typing import Any

import pytest

ServerProcess = Any
INT64_OVER = 2**63  # 9223372036854775808: one past the largest id either database stores


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    if request.param == "sqlite":
        return server_factory()
    return server_factory(db_url=request.getfixturevalue("pg_url"))


# Well-formed bodies, so access rules (not body validation) decide the answer; others get {}.
BODIES = {
    "/api/tasks/{task_id}/submit": {"idempotency_key": "probe", "ranking": [[1]]},
    "/api/tasks/{task_id}/problem": {"text": "probe"},
}


def _fill(path: str, values: dict[str, Any]) -> str:
    for key, value in values.items():
        path = path.replace("{" + key + "}", str(value))
    return path


def _counts(server: ServerProcess) -> Any:
    """What the admin can see of the stored state (rows per table, as the API counts them)."""
    admin = server.admin_token
    campaigns = server.api("GET", "/api/campaigns", admin).json()
    users = server.api("GET", "/api/users", admin).json()
    judgments = [server.api("GET", f"/api/campaigns/{c['id']}/judgments", admin).json() for c in campaigns]
    tokens = [len(server.api("GET", f"/api/users/{u['name']}/tokens", admin).json()) for u in users]
    return campaigns, users, judgments, tokens


def test_every_endpoint_for_every_role(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["pr_ann", "pr_other"], n_items=4, k=2, overlap=1)
    # pr_other is a member of another campaign only
    other_camp = server.create_campaign(name="other", annotators=["pr_other2"], n_items=1, k=2)
    tokens = {
        "anonymous": None,
        "annotator": camp.tokens["pr_ann"],
        "other": other_camp.tokens["pr_other2"],
        "admin": server.admin_token,
    }
    task = server.api("GET", f"/api/campaigns/{camp.id}/next", tokens["annotator"]).json()["task"]
    victim = server.api("POST", "/api/users", server.admin_token, json={"name": "pr_victim"}).json()
    values = {
        "cid": camp.id,
        "task_id": task["task_id"],
        "name": "pr_victim",
        "token_id": 1,
        "response_id": 1,
    }
    schema = server.api("GET", "/openapi.json").json()
    seen = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for role, token in tokens.items():
                if path == "/api/logout" and token is not None:
                    # use a fresh token of the same user: logging out revokes the one sent
                    name = {"annotator": "pr_ann", "other": "pr_other2", "admin": "admin"}[role]
                    r = server.api("POST", f"/api/users/{name}/tokens", server.admin_token)
                    token = r.json()["token"]
                url = _fill(path, values)
                kwargs: dict[str, Any] = (
                    {"json": BODIES.get(path, {})} if method in ("post", "put", "patch") else {}
                )
                if "export" in path:
                    url += "?kind=pairwise"
                r = server.api(method.upper(), url, token, **kwargs)
                seen += 1
                where = f"{method.upper()} {path} as {role}: {r.status_code} {r.text[:200]}"
                assert r.status_code < 500, where
                if r.status_code >= 400:
                    assert isinstance(r.json().get("detail"), str) and r.json()["detail"], where
                tags = op.get("tags", [])
                if path in ("/api/health", "/api/login"):
                    assert r.status_code in (200, 422), where
                elif role == "anonymous":
                    assert r.status_code == 401, where
                elif {"admin", "review"} & set(tags):
                    assert (r.status_code == 403) == (role != "admin"), where
                elif role == "other" and ("{cid}" in path or "{task_id}" in path):
                    assert r.status_code == 404, where  # as if it did not exist
                elif role == "admin" and "{task_id}" in path:
                    assert r.status_code == 404, where  # not the admin's task
                elif role == "admin" and "annotation" in tags:
                    assert r.status_code == 403 and "not an annotator" in r.json()["detail"], where
                else:
                    assert r.status_code not in (401, 403), where
    assert seen == 4 * sum(len(ops) for ops in schema["paths"].values()) >= 4 * 20
    assert victim["name"] == "pr_victim"


def test_bad_input_table(server: ServerProcess) -> None:
    camp = server.create_campaign(annotators=["bi_ann"], n_items=2, k=3, overlap=1, anonymous=False)
    ann = camp.tokens["bi_ann"]
    task = server.api("GET", f"/api/campaigns/{camp.id}/next", ann).json()["task"]
    tid = task["task_id"]
    a, b, c = (r["id"] for r in task["responses"])
    cid = camp.id
    admin = "admin"
    deep = "[" * 100_000 + "]" * 100_000

    def raw_rating(number: str) -> str:  # JSON numbers Python's json writes only as inf/nan
        return '{"idempotency_key": "k", "ratings": {"' + str(a) + '": ' + number + "}}"

    # (role, method, path, body (dict/list = JSON, str = raw), status, words the message must hold)
    table: list[tuple[str, str, str, Any, int, str]] = [
        # numbers beyond int64, zero and negative ids, negative seeds
        (admin, "GET", f"/api/campaigns/{INT64_OVER}", None, 422, "cid"),
        (admin, "GET", f"/api/campaigns/{INT64_OVER}/judgments", None, 422, "cid"),
        (admin, "GET", "/api/campaigns/-1", None, 422, "cid"),
        (admin, "GET", "/api/campaigns/0", None, 422, "cid"),
        ("ann", "GET", f"/api/campaigns/{INT64_OVER}/next", None, 422, "cid"),
        ("ann", "GET", f"/api/tasks/{INT64_OVER}", None, 422, "task_id"),
        ("ann", "GET", f"/api/tasks/{10**30}", None, 422, "task_id"),
        (
            "ann",
            "POST",
            f"/api/tasks/{INT64_OVER}/submit",
            {"idempotency_key": "k", "ranking": [[a]]},
            422,
            "task_id",
        ),
        ("ann", "POST", f"/api/tasks/{INT64_OVER}/skip", None, 422, "task_id"),
        ("ann", "POST", f"/api/campaigns/{INT64_OVER}/undo", None, 422, "cid"),
        (admin, "GET", f"/api/campaigns/{cid}/leaderboard?seed=-1", None, 422, "seed"),
        (admin, "GET", f"/api/campaigns/{cid}/leaderboard?seed={2**40}", None, 422, "seed"),
        (admin, "GET", f"/api/campaigns/{cid}/leaderboard.png?seed=-1", None, 422, "seed"),
        (admin, "GET", f"/api/campaigns/{cid}/leaderboard?n_bootstrap=-5", None, 422, "n_bootstrap"),
        (admin, "GET", f"/api/campaigns/{cid}/leaderboard?seed=abc", None, 422, "seed"),
        (admin, "DELETE", f"/api/users/bi_ann/tokens/{INT64_OVER}", None, 422, "token_id"),
        (admin, "GET", f"/api/campaigns/{cid}/export?kind=pairwise&mode=weird", None, 422, "mode"),
        # ids in bodies
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "pairwise": {"a": INT64_OVER, "b": a, "choice": "a"}},
            422,
            "pairwise.a",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": [[-1], [a]]},
            422,
            "ranking",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ratings": {str(INT64_OVER * 10): 3}},
            422,
            "ratings",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ratings": {f"0{a}": 3}},
            422,
            "not a response id",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "thumbs": {f" {a}": True}},
            422,
            "not a response id",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ratings": {str(a): 1, f"+{a}": 7}},
            422,
            "not a response id",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            raw_rating("NaN"),
            422,
            "ratings",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            raw_rating("Infinity"),
            422,
            "ratings",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            raw_rating("1e400"),
            422,
            "ratings",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": [[a], [b]]},
            422,
            "missing response id",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": [[a], [b], [c], [999]]},
            422,
            "unknown response id",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": [[a, a], [b], [c]]},
            422,
            "more than once",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "", "ranking": [[a], [b], [c]]},
            422,
            "idempotency_key",
        ),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "critique": "   "},
            422,
            "critique",
        ),
        ("ann", "POST", f"/api/tasks/{tid}/submit", {"idempotency_key": "k"}, 422, "empty submission"),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": "abc"},
            422,
            "ranking",
        ),
        ("ann", "POST", f"/api/tasks/{tid}/submit", "not json", 422, "JSON"),
        ("ann", "POST", f"/api/tasks/{tid}/submit", deep, 400, "error parsing the body"),
        ("ann", "POST", f"/api/tasks/{tid}/submit", [1, 2], 422, "invalid request"),
        (
            "ann",
            "POST",
            f"/api/tasks/{tid}/submit",
            {"idempotency_key": "k", "ranking": [[a], [b], [c]], "extra": 1},
            422,
            "extra",
        ),
        # campaigns, items, users
        (admin, "POST", "/api/campaigns", {"name": " \t ", "feedback_types": ["ranking"]}, 422, "name"),
        (admin, "POST", "/api/campaigns", {"name": "x", "feedback_types": []}, 422, "feedback_types"),
        (admin, "PATCH", f"/api/campaigns/{cid}", {"name": "  "}, 422, "name"),
        (admin, "PATCH", f"/api/campaigns/{INT64_OVER}", {"name": "x"}, 422, "cid"),
        (admin, "POST", f"/api/judgments/{INT64_OVER}/review", {"review": "accepted"}, 422, "jid"),
        (admin, "POST", f"/api/items/{INT64_OVER}/comments", {"text": "x"}, 422, "item_id"),
        ("ann", "POST", f"/api/tasks/{INT64_OVER}/problem", {"text": "x"}, 422, "task_id"),
        (admin, "GET", f"/api/campaigns/{cid}/review?offset=-1", None, 422, "offset"),
        (
            admin,
            "POST",
            "/api/campaigns",
            {"name": "x", "feedback_types": ["ranking"], "overlap": INT64_OVER},
            422,
            "overlap",
        ),
        (
            admin,
            "POST",
            "/api/campaigns",
            {"name": "x", "feedback_types": ["rating"], "rating_scale": [7, 1]},
            422,
            "rating_scale",
        ),
        (
            admin,
            "POST",
            "/api/campaigns",
            '{"name": "x", "feedback_types": ["rating"], "rating_scale": [-Infinity, 1]}',
            422,
            "rating_scale",
        ),
        (
            admin,
            "POST",
            f"/api/campaigns/{cid}/items",
            {"items": [{"prompt": "", "responses": [{"text": "a"}]}]},
            422,
            "prompt",
        ),
        (
            admin,
            "POST",
            f"/api/campaigns/{cid}/items",
            {"items": [{"prompt": "p", "responses": [{"text": "  "}]}]},
            422,
            "text",
        ),
        (
            admin,
            "POST",
            f"/api/campaigns/{cid}/items",
            {"items": [{"prompt": "p", "responses": []}]},
            422,
            "responses",
        ),
        (
            admin,
            "POST",
            f"/api/campaigns/{cid}/items",
            {"items": [{"prompt": [{"role": "user", "content": " "}], "responses": [{"text": "a"}]}]},
            422,
            "prompt",
        ),
        (
            admin,
            "POST",
            f"/api/campaigns/{cid}/items",
            {"items": [{"prompt": "p", "responses": [{"text": "a"}], "gold": {"chosen": INT64_OVER}}]},
            422,
            "gold",
        ),
        (admin, "POST", f"/api/campaigns/{cid}/annotators", {"names": ["has space"]}, 422, "user name"),
        (admin, "POST", f"/api/campaigns/{cid}/annotators", {"names": ["a/b"]}, 422, "user name"),
        (admin, "POST", f"/api/campaigns/{cid}/annotators", {"names": ["zed", "ZED"]}, 422, "twice"),
        (admin, "POST", f"/api/campaigns/{INT64_OVER}/annotators", {"names": ["zed"]}, 422, "cid"),
        (admin, "POST", "/api/users", {"name": "BI_ANN"}, 409, "already exists"),
        (admin, "POST", "/api/users", {"name": "newbie", "password": "short"}, 422, "at least 8"),
        (admin, "POST", "/api/users", {"name": "new\u0000bie"}, 422, "user name"),
        (admin, "POST", "/api/users", {"name": "x" * 201}, 422, "user name"),
        (admin, "POST", "/api/users/nobody/tokens", None, 404, "not found"),
        (None, "POST", "/api/login", {"name": "", "password": "x"}, 422, "name"),
        (None, "POST", "/api/login", {"name": "admin"}, 422, "password"),
    ]
    tokens = {"ann": ann, admin: server.admin_token, None: None}
    before = _counts(server)
    for role, method, path, body, status, needle in table:
        kwargs: dict[str, Any] = {}
        if isinstance(body, str):
            kwargs = {"content": body, "headers": {"Content-Type": "application/json"}}
        elif body is not None:
            kwargs = {"json": body}
        r = server.api(method, path, tokens[role], **kwargs)
        where = f"{method} {path} {str(body)[:120]}: {r.status_code} {r.text[:300]}"
        assert r.status_code == status, where
        detail = r.json()["detail"]
        assert isinstance(detail, str) and needle.lower() in detail.lower(), where
    assert _counts(server) == before  # nothing stored, nothing lost
    # the task is still answerable after all that
    ok = {"idempotency_key": "good", "ranking": [[a], [b], [c]]}
    assert server.api("POST", f"/api/tasks/{tid}/submit", ann, json=ok).status_code == 200
