"""Shared fixtures for the feedback tests: a real `prefloop serve` process on a loopback port.

    def test_something(live_server):
        camp = live_server.create_campaign(annotators=["alice", "bob"], n_items=4, k=3)
        alice = live_server.client(camp.tokens["alice"])
        task = alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]

`live_server` is a fresh server over a fresh SQLite file in tmp_path (admin password
ADMIN_PASSWORD, admin token in `.admin_token`); `module_server` is one server shared by a test
module (starting a server costs seconds on a loaded machine). Tokens of annotators created by
`create_campaign` are remembered in `.tokens`, so names can be reused across campaigns. `server_factory(db_url=None)` starts more
(e.g. on PostgreSQL, or again on the same DB after a kill -9); all are stopped at teardown.
Test modules use these through the fixtures (`live_server.make_items(...)`), never by importing
this file: several conftest.py files share the module name "conftest".
`pg_url` yields a fresh, empty PostgreSQL database when PREFLOOP_TEST_PG_URL is set (else skips).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_PASSWORD = "admin-password-for-tests"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_items(
    n: int, k: int = 3, models: list[str] | None = None, prefix: str = "item"
) -> list[dict[str, Any]]:
    """n items with k responses each; response j comes from models[j] (default model-0..k-1)."""
    models = models or [f"model-{j}" for j in range(k)]
    return [
        {
            "prompt": f"{prefix} {i}: write something",
            "responses": [
                {"text": f"{prefix} {i} answer {j}", "model": models[j % len(models)]} for j in range(k)
            ],
        }
        for i in range(n)
    ]


@dataclass
class CampaignHandle:
    id: int
    tokens: dict[str, str]
    item_ids: list[int]
    info: dict[str, Any] = field(default_factory=dict)


class ServerProcess:
    """`python -m prefloop.cli serve` in a subprocess; logs go to `log_path`."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        admin_password: str = ADMIN_PASSWORD,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.db_url = db_url
        self.extra_args = list(extra_args)
        self.workdir = workdir
        self.admin_password = admin_password
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.admin_token = ""
        self.log_path = workdir / f"server-{uuid.uuid4().hex[:6]}.log"
        self.tokens: dict[str, str] = {}  # every annotator token this helper has seen, by name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> ServerProcess:  # a loaded 2-core machine is slow to start one
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "prefloop.cli",
            "serve",
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--admin-password",
            self.admin_password,
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not come up in {timeout}s:\n{self.log()}")
            time.sleep(0.1)
        r = httpx.post(self.base_url + "/api/login", json={"name": "admin", "password": self.admin_password})
        r.raise_for_status()
        self.admin_token = r.json()["token"]
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown handlers, no flushing - what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    make_items = staticmethod(make_items)

    # -- HTTP helpers -------------------------------------------------------------------------
    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        with self.client(token) as c:
            return c.request(method, path, **kwargs)

    def create_campaign(
        self,
        name: str = "test campaign",
        annotators: list[str] | tuple[str, ...] = ("alice", "bob"),
        items: list[dict[str, Any]] | None = None,
        n_items: int = 4,
        k: int = 3,
        feedback_types: list[str] | tuple[str, ...] = (
            "pairwise",
            "ranking",
            "rating",
            "binary",
            "critique",
            "edit",
        ),
        overlap: int = 1,
        anonymous: bool = True,
        rating_scale: tuple[float, float] = (1, 7),
        instructions: str = "Rank the responses from best to worst.",
    ) -> CampaignHandle:
        """Create a campaign, add items (default `make_items(n_items, k)`), add annotators (new accounts)."""
        with self.admin() as c:
            r = c.post(
                "/api/campaigns",
                json={
                    "name": name,
                    "feedback_types": list(feedback_types),
                    "overlap": overlap,
                    "anonymous": anonymous,
                    "rating_scale": list(rating_scale),
                    "instructions": instructions,
                },
            )
            r.raise_for_status()
            info = r.json()
            cid = info["id"]
            r = c.post(
                f"/api/campaigns/{cid}/items",
                json={"items": items if items is not None else make_items(n_items, k)},
            )
            r.raise_for_status()
            item_ids = r.json()["item_ids"]
            tokens: dict[str, str] = {}
            if annotators:
                r = c.post(f"/api/campaigns/{cid}/annotators", json={"names": list(annotators)})
                r.raise_for_status()
                self.tokens.update({a["name"]: a["token"] for a in r.json()["annotators"] if a["token"]})
                tokens = {name: self.tokens[name] for name in annotators if name in self.tokens}
        return CampaignHandle(id=cid, tokens=tokens, item_ids=item_ids, info=info)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[ServerProcess] = []

    def make(
        db_url: str | None = None, start: bool = True, extra_args: tuple[str, ...] = ()
    ) -> ServerProcess:
        server = ServerProcess(
            db_url or f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path, extra_args=extra_args
        )
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(server_factory: Any) -> ServerProcess:
    """A running feedback server on a fresh SQLite DB (function scope)."""
    return server_factory()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a whole test module (tests must not depend on a fresh DB: use own names)."""
    workdir = tmp_path_factory.mktemp("feedback-server")
    server = ServerProcess(f"sqlite:///{workdir / 'feedback.db'}", workdir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); skips without PREFLOOP_TEST_PG_URL."""
    base = os.environ.get("PREFLOOP_TEST_PG_URL")
    if not base:
        pytest.skip("PREFLOOP_TEST_PG_URL not set (scripts/run-tests.sh starts a PostgreSQL server)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from prefloop.feedback.store import normalize_url

    base = normalize_url(base)
    name = f"prefloop_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and (when PREFLOOP_TEST_PG_URL is set) on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
