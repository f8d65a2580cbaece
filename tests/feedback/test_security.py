"""Security review findings, each against a real server (or the real CLI on a real database).

Every test here failed on the server as it was reviewed (issue 8, items 1-8): open redirect,
model leak through response ids, tokens that never expire, bodies read before authentication,
no login rate limit, login timing, validation gaps, headers and hygiene. The every-endpoint x
every-role probes and the bad-number table live in test_probes.py.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from prefloop.feedback import auth, cli

ServerProcess = Any
CHROMIUM = "/usr/bin/chromium"


def _login(server: ServerProcess, name: str, password: str) -> Any:
    return server.api("POST", "/api/login", json={"name": name, "password": password})


def _user(server: ServerProcess, name: str, password: str | None = None, role: str = "annotator") -> str:
    body: dict[str, Any] = {"name": name, "role": role}
    if password:
        body["password"] = password
    r = server.api("POST", "/api/users", server.admin_token, json=body)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _raw_http(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request` as is over a socket; the reply's bytes up to the end of its headers + some."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


# ---------------------------------------------------------------------------------------------
# 2. opaque per-task response ids


def test_response_ids_do_not_reveal_the_file_order(live_server: ServerProcess) -> None:
    # "File" A's response is always first in the item, file B's second (as `campaign create
    # --items a.jsonl b.jsonl` stores them). Before: ids numbered in that order, so the lowest id
    # was model A in 20 of 20 tasks.
    items = [
        {
            "prompt": f"question {i}",
            "responses": [{"text": f"A says {i}", "model": "A"}, {"text": f"B says {i}", "model": "B"}],
        }
        for i in range(20)
    ]
    camp = live_server.create_campaign(annotators=["op_alice"], items=items, anonymous=True)
    tok = camp.tokens["op_alice"]
    lowest_is_a = first_is_a = 0
    seen_ids: set[int] = set()
    while (task := live_server.api("GET", f"/api/campaigns/{camp.id}/next", tok).json()["task"]) is not None:
        ids = [r["id"] for r in task["responses"]]
        seen_ids.update(ids)
        body = {"idempotency_key": f"k{task['task_id']}", "ranking": [[ids[0]], [ids[1]]]}
        r = live_server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body)
        assert r.status_code == 200, r.text
        models = r.json()["revealed_models"]
        lowest_is_a += models[str(min(ids))] == "A"
        first_is_a += models[str(ids[0])] == "A"
    assert 0 < lowest_is_a < 20 and 0 < first_is_a < 20
    stored = live_server.api("GET", f"/api/campaigns/{camp.id}/judgments", live_server.admin_token).json()
    real_ids = {r["id"] for j in stored for r in j["responses"]}
    assert len(stored) == 20 and not seen_ids & real_ids  # annotators never see database ids


def test_identical_texts_are_shown_once_and_judged_for_every_copy(live_server: ServerProcess) -> None:
    items = [
        {
            "prompt": "say hi",
            "responses": [
                {"text": "hi", "model": "m-a"},
                {"text": "hello there", "model": "m-c"},
                {"text": "hi", "model": "m-b"},
            ],
        }
    ]
    camp = live_server.create_campaign(annotators=["dd_alice"], items=items, anonymous=False)
    tok = camp.tokens["dd_alice"]
    task = live_server.api("GET", f"/api/campaigns/{camp.id}/next", tok).json()["task"]
    assert [(r["text"], r["model"]) for r in task["responses"]] == [
        ("hi", "m-a, m-b"),
        ("hello there", "m-c"),
    ]
    hi, hello = (r["id"] for r in task["responses"])
    body = {"idempotency_key": "k", "ranking": [[hello], [hi]], "ratings": {str(hi): 2}}
    r = live_server.api("POST", f"/api/tasks/{task['task_id']}/submit", tok, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["revealed_models"] == {str(hi): "m-a, m-b", str(hello): "m-c"}
    (j,) = live_server.api("GET", f"/api/campaigns/{camp.id}/judgments", live_server.admin_token).json()
    ra, rc, rb = (r["id"] for r in j["responses"])  # database ids in item order
    assert j["payload"] == {"ranking": [[rc], [ra, rb]], "ratings": {str(ra): 2, str(rb): 2}}
    # undo gives the answer back in the ids the annotator saw
    undone = live_server.api("POST", f"/api/campaigns/{camp.id}/undo", tok).json()
    assert undone["previous"] == {"ranking": [[hello], [hi]], "ratings": {str(hi): 2}}


# ---------------------------------------------------------------------------------------------
# 3. token expiry, revocation (API, CLI), server-side logout


def test_tokens_expire(server_factory: Any) -> None:
    server = server_factory(extra_args=("--token-ttl-hours", str(3 / 3600)))  # 3 s
    tok = _user(server, "exp_alice")
    assert server.api("GET", "/api/me", tok).status_code == 200
    time.sleep(3.5)
    r = server.api("GET", "/api/me", tok)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    # a body-carrying request is refused the same way (by the guard, before its body)
    assert server.api("POST", "/api/logout", tok).status_code == 401


def test_admin_revokes_tokens_by_api(live_server: ServerProcess) -> None:
    tok = _user(live_server, "rv_alice", "alice-password")
    second = _login(live_server, "rv_alice", "alice-password").json()["token"]
    listed = live_server.api("GET", "/api/users/rv_alice/tokens", live_server.admin_token).json()
    assert len(listed) == 2 and all(t["expires_at"] and not t["expired"] for t in listed)
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    # one token, then all of them
    r = live_server.api("DELETE", f"/api/users/rv_alice/tokens/{listed[0]['id']}", live_server.admin_token)
    assert r.status_code == 200 and r.json()["revoked"] == 1
    assert live_server.api("GET", "/api/me", tok).status_code == 401
    assert live_server.api("GET", "/api/me", second).status_code == 200
    r = live_server.api("DELETE", "/api/users/RV_ALICE/tokens", live_server.admin_token)
    assert r.status_code == 200 and r.json() == {"name": "rv_alice", "revoked": 1}
    assert live_server.api("GET", "/api/me", second).status_code == 401
    # annotators cannot revoke
    other = _user(live_server, "rv_bob")
    assert live_server.api("DELETE", "/api/users/rv_alice/tokens", other).status_code == 403


def test_logout_revokes_the_token_on_the_server(live_server: ServerProcess) -> None:
    tok = _user(live_server, "lo_alice")
    assert live_server.api("POST", "/api/logout", tok).json() == {"ok": True}
    assert live_server.api("GET", "/api/me", tok).status_code == 401


def test_cli_revoke_token(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from prefloop.feedback.store import Store

    db = f"sqlite:///{tmp_path / 'rv.db'}"
    items = tmp_path / "items.jsonl"
    items.write_text('{"prompt": "p", "responses": ["x", "y"]}\n')
    cli.main(["create", "--db", db, "--items", str(items), "--annotators", "carol"], command="campaign")
    token = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  carol")).split("\t")[1]
    store = Store(db)
    with store.read() as s:
        assert auth.user_for_token(s, token) is not None
    cli.main(["revoke-token", "--db", db, "--name", "Carol"], command="campaign")
    assert "carol: revoked 1 token(s)" in capsys.readouterr().out
    with store.read() as s:
        assert auth.user_for_token(s, token) is None
    store.dispose()
    with pytest.raises(SystemExit, match="user 'nobody' not found"):
        cli.main(["revoke-token", "--db", db, "--name", "nobody"], command="campaign")


# ---------------------------------------------------------------------------------------------
# 4. bodies: authentication first, size cap


def test_unauthenticated_body_is_refused_before_it_is_read(live_server: ServerProcess) -> None:
    # Announce 100 MB and send none of it: the answer must come from the headers alone.
    head = (
        "POST /api/campaigns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 2**20}\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    reply = _raw_http(live_server.port, head, timeout=10)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert time.monotonic() - t0 < 5
    bad = head.replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Bearer not-a-token\r\n")
    assert _raw_http(live_server.port, bad).startswith(b"HTTP/1.1 401")


def test_body_size_cap_413(server_factory: Any) -> None:
    server = server_factory(extra_args=("--max-body-mb", "0.01"))  # 10 KiB
    big = {"items": [{"prompt": "p" * 20_000, "responses": [{"text": "x"}]}]}
    r = server.api("POST", "/api/campaigns/1/items", server.admin_token, json=big)
    assert r.status_code == 413 and "limit is 10485 bytes" in r.json()["detail"]
    # a chunked body (no Content-Length) is cut off at the limit too

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 1000

    r = server.api("POST", "/api/campaigns", server.admin_token, content=chunks())
    assert r.status_code == 413
    # an oversized login is refused before the password hash runs
    r = server.api("POST", "/api/login", json={"name": "admin", "password": "p" * 70_000})
    assert r.status_code == 413
    assert server.api("GET", "/api/campaigns", server.admin_token).json() == []


# ---------------------------------------------------------------------------------------------
# 5. login rate limit, lockout, equal cost


def test_login_lockout_by_name_then_by_address(server_factory: Any) -> None:
    server = server_factory(extra_args=("--login-max-failures", "5", "--login-address-max-failures", "12"))
    _user(server, "rl_alice", "alice-password")
    for _ in range(5):
        assert _login(server, "rl_alice", "wrong-password").status_code == 401
    r = _login(server, "RL_ALICE", "alice-password")  # the right password, but locked
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "too many" in r.json()["detail"]
    # guessing other names from the same address: locked after 12 failures in all
    statuses = [_login(server, f"nobody{i}", "wrong-password").status_code for i in range(8)]
    assert statuses[:7] == [401] * 7 and statuses[7] == 429
    assert _login(server, "admin", server.admin_password).status_code == 429


def test_every_failed_login_costs_one_scrypt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: unknown names ran two scrypts, token-only users none, so timing told them apart."""
    from prefloop.feedback.store import Store, upgrade

    db = f"sqlite:///{tmp_path / 'cost.db'}"
    upgrade(db)
    store = Store(db)
    with store.write() as s:
        auth.create_user(s, "pw_user", "annotator", password="right-password")
        auth.create_user(s, "token_only", "annotator")
    calls = []
    real_scrypt = hashlib.scrypt

    def counting_scrypt(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(auth.hashlib, "scrypt", counting_scrypt)
    costs = {}
    for name, password in [
        ("nobody", "whatever-pw"),
        ("token_only", "whatever-pw"),
        ("pw_user", "wrong-password"),
        ("PW_USER", "right-password"),
    ]:
        calls.clear()
        with store.read() as s:
            user = auth.login(s, name, password)
        costs[name] = (len(calls), user is not None)
    store.dispose()
    assert costs == {
        "nobody": (1, False),
        "token_only": (1, False),
        "pw_user": (1, False),
        "PW_USER": (1, True),
    }


# ---------------------------------------------------------------------------------------------
# 7. validation gaps


def test_validation_gaps_are_4xx(live_server: ServerProcess) -> None:
    admin = live_server.admin_token
    cases = [
        ("/api/campaigns", {"name": "   ", "feedback_types": ["ranking"]}, 422, "name"),
        (
            "/api/campaigns",
            {"name": "x", "feedback_types": ["rating"], "rating_scale": [1, "Infinity"]},
            422,
            "",
        ),
    ]
    for path, body, status, needle in cases:
        r = live_server.api("POST", path, admin, json=body)
        assert r.status_code == status and needle in r.json()["detail"], (body, r.text)
    camp = live_server.create_campaign(annotators=["vg_alice"], n_items=1, k=2, anonymous=False)
    for items, needle in [
        ([{"prompt": "  ", "responses": [{"text": "a"}]}], "prompt"),
        ([{"prompt": [], "responses": [{"text": "a"}]}], "prompt"),
        ([{"prompt": "p", "responses": [{"text": ""}]}], "text"),
        ([{"prompt": "p", "responses": [{"text": " \n"}]}], "text"),
    ]:
        r = live_server.api("POST", f"/api/campaigns/{camp.id}/items", admin, json={"items": items})
        assert r.status_code == 422 and needle in r.json()["detail"], (items, r.text)
    # one user per name, whatever the case
    r = live_server.api("POST", "/api/users", admin, json={"name": "VG_ALICE", "role": "annotator"})
    assert r.status_code == 409 and "case-insensitive" in r.json()["detail"]
    assert _login(live_server, "ADMIN", live_server.admin_password).json()["name"] == "admin"
    r = live_server.api("POST", f"/api/campaigns/{camp.id}/annotators", admin, json={"names": ["Vg_Alice"]})
    assert r.json()["annotators"] == [
        {"name": "vg_alice", "role": "annotator", "token": None, "created": False}
    ]
    # ratings keys that name one response twice
    tok = camp.tokens["vg_alice"]
    task = live_server.api("GET", f"/api/campaigns/{camp.id}/next", tok).json()["task"]
    a, b = (r["id"] for r in task["responses"])
    url = f"/api/tasks/{task['task_id']}/submit"
    r = live_server.api("POST", url, tok, json={"idempotency_key": "k1", "ratings": {str(a): 1, f"+{a}": 7}})
    assert r.status_code == 422 and "not a response id" in r.json()["detail"], r.text
    # the same idempotency key with a different answer: 409, the first answer kept
    first = {"idempotency_key": "k2", "ranking": [[a], [b]]}
    assert live_server.api("POST", url, tok, json=first).json()["duplicate"] is False
    assert live_server.api("POST", url, tok, json=first).json()["duplicate"] is True
    r = live_server.api("POST", url, tok, json={**first, "ranking": [[b], [a]]})
    assert r.status_code == 409 and "different answer" in r.json()["detail"]
    stored = live_server.api("GET", f"/api/campaigns/{camp.id}/judgments", admin).json()
    assert len(stored) == 1 and stored[0]["payload"]["ranking"][0] == [stored[0]["responses"][0]["id"]]


def test_cli_uses_the_api_rules_for_names_and_passwords(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"prompt": "p", "responses": ["x", "y"]}\n')
    db = f"sqlite:///{tmp_path / 'rules.db'}"
    with pytest.raises(SystemExit, match="no spaces"):
        cli.main(
            ["create", "--db", db, "--items", str(items), "--annotators", "bad name"], command="campaign"
        )
    with pytest.raises(SystemExit, match="twice"):
        cli.main(
            ["create", "--db", db, "--items", str(items), "--annotators", "bo", "BO"], command="campaign"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "prefloop.cli", "serve", "--db", db, "--admin-password", "short"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "at least 8 characters" in proc.stderr
    assert not (tmp_path / "rules.db").exists()


# ---------------------------------------------------------------------------------------------
# 8. headers and hygiene


def test_security_headers_on_pages_and_api(live_server: ServerProcess) -> None:
    for path in ("/login", "/", "/api/health", "/static/app.js", "/docs", "/api/nope"):
        r = live_server.api("GET", path)
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, path
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert r.headers.get("x-frame-options") == "DENY", path
        assert r.headers.get("x-content-type-options") == "nosniff", path


def test_docs_work_offline_with_bearer_auth(live_server: ServerProcess) -> None:
    page = live_server.api("GET", "/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert "<script>" not in page.text  # no inline script (CSP)
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/static/docs.js"):
        assert live_server.api("GET", asset).status_code == 200, asset
    schema = live_server.api("GET", "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from POST /api/login or an admin.",
    }
    assert schema["paths"]["/api/me"]["get"]["security"] == [{"HTTPBearer": []}]


def test_campaign_list_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "typo" / "x.db"
    for sub in (["list"], ["export", "--campaign", "1"], ["token", "--name", "a"]):
        with pytest.raises(SystemExit, match="no database at"):
            cli.main([*sub, "--db", f"sqlite:///{target}"], command="campaign")
    assert not target.exists() and not target.parent.exists()


def test_startup_log_hides_the_database_password(server_factory: Any, pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(password="hunter2-secret").render_as_string(hide_password=False)
    server = server_factory(db_url=url)  # the test cluster trusts local connections
    assert "hunter2-secret" not in server.log() and "***" in server.log()


def test_display_url_masks_passwords() -> None:
    assert cli.display_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert cli.display_url("sqlite:///a/b.db") == "sqlite:///a/b.db"


# ---------------------------------------------------------------------------------------------
# 1 and 3 in the browser: the redirect after login, "Log out"


@pytest.mark.browser
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_login_redirect_stays_on_this_server_and_logout_revokes(live_server: ServerProcess) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    base = live_server.base_url
    _user(live_server, "br_alice", "alice-password")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        for evil in (
            "/%5Cevil.example/x",
            "/%09/evil.example/x",
            "//evil.example/x",
            "https://evil.example/",
        ):
            page.goto(base + "/login?next=" + evil)
            page.evaluate("localStorage.clear()")
            page.fill("#login-name", "br_alice")
            page.fill("#login-password", "alice-password")
            page.click("#login-submit")
            page.wait_for_url(base + "/")
            assert page.url == base + "/", evil
        page.goto(base + "/login?next=/annotate/7%3Fa%3D1")
        page.fill("#login-name", "br_alice")
        page.fill("#login-password", "alice-password")
        page.click("#login-submit")
        page.wait_for_url(base + "/annotate/7?a=1")
        token = page.evaluate("localStorage.getItem('prefloop_token')")
        assert live_server.api("GET", "/api/me", token).status_code == 200
        page.goto(base + "/")
        page.click("#logout")
        page.wait_for_url(base + "/login")
        assert live_server.api("GET", "/api/me", token).status_code == 401  # revoked, not just forgotten
        browser.close()
