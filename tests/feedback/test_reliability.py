"""Reliability against the real server process: many concurrent annotators, retries, kill -9.

Every acknowledged submission must be stored exactly once: the tests count rows in the database
itself, not what the API says.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

N_ANNOTATORS = 20
PER_ANNOTATOR = 50


def _setup(server: Any, n_annotators: int, per_annotator: int, overlap: int) -> tuple[int, dict[str, str]]:
    names = [f"ann{i:02d}" for i in range(n_annotators)]
    n_items = n_annotators * per_annotator // overlap
    camp = server.create_campaign(
        annotators=names, n_items=n_items, k=2, overlap=overlap, feedback_types=["pairwise", "rating"]
    )
    return camp.id, camp.tokens


class Annotator:
    """One client: next -> submit until no task is left (or the server goes away).

    Every `retry_every`-th submission is sent again with the same idempotency key, alternately
    right after the first answer and concurrently with it."""

    def __init__(
        self,
        server: Any,
        cid: int,
        name: str,
        token: str,
        retry_every: int = 5,
        stop: threading.Event | None = None,
    ) -> None:
        self.base_url, self.cid, self.name, self.token = server.base_url, cid, name, token
        self.retry_every = retry_every
        self.stop = stop or threading.Event()
        self.acked: dict[str, int] = {}  # idempotency key -> judgment id (the server said 200)
        self.attempted: dict[tuple[int, str], dict[str, Any]] = {}  # (task, key) -> body
        self.duplicates = 0
        self.errors: list[str] = []

    def _post(self, client: httpx.Client, task_id: int, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(f"/api/tasks/{task_id}/submit", json=body)
        if r.status_code != 200:
            raise AssertionError(f"{self.name}: submit -> {r.status_code} {r.text}")
        return r.json()

    def _record(self, key: str, answer: dict[str, Any]) -> None:
        if key in self.acked and self.acked[key] != answer["judgment_id"]:
            self.errors.append(f"{key}: two judgment ids {self.acked[key]} and {answer['judgment_id']}")
        self.acked[key] = answer["judgment_id"]
        self.duplicates += answer["duplicate"]

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with (
            httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as client,
            ThreadPoolExecutor(2) as pool,
        ):
            n = 0
            while not self.stop.is_set():
                try:
                    task = client.get(f"/api/campaigns/{self.cid}/next").json()["task"]
                    if task is None:
                        return
                    a, b = (r["id"] for r in task["responses"])
                    key = f"{self.name}-{task['task_id']}"
                    body = {
                        "idempotency_key": key,
                        "ratings": {str(a): 1 + n % 7},
                        "pairwise": {"a": a, "b": b, "choice": "a" if n % 2 else "b", "strength": "better"},
                    }
                    self.attempted[(task["task_id"], key)] = body
                    n += 1
                    if n % self.retry_every == 0 and n % (2 * self.retry_every) == 0:
                        answers = list(
                            pool.map(lambda _: self._post(client, task["task_id"], body), range(2))  # noqa: B023 - map runs now
                        )
                    elif n % self.retry_every == 0:
                        answers = [
                            self._post(client, task["task_id"], body),
                            self._post(client, task["task_id"], body),
                        ]
                    else:
                        answers = [self._post(client, task["task_id"], body)]
                    for answer in answers:
                        self._record(key, answer)
                except httpx.TransportError:
                    if self.stop.is_set():
                        return
                    time.sleep(0.05)
                except AssertionError as exc:
                    self.errors.append(str(exc))
                    return


def _run_all(annotators: list[Annotator]) -> float:
    start = time.perf_counter()
    threads = [threading.Thread(target=a.run) for a in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return time.perf_counter() - start


def _count_rows(db_url: str) -> tuple[int, int, list[tuple[int, str]]]:
    from prefloop.feedback.store import normalize_url

    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM judgments")).scalar()
            distinct = conn.execute(
                text("SELECT count(*) FROM (SELECT DISTINCT user_id, idempotency_key FROM judgments) t")
            ).scalar()
            rows = [tuple(r) for r in conn.execute(text("SELECT id, idempotency_key FROM judgments"))]
    finally:
        engine.dispose()
    return n, distinct, rows


def _check_concurrent_run(server: Any) -> None:
    cid, tokens = _setup(server, N_ANNOTATORS, PER_ANNOTATOR, overlap=2)
    annotators = [Annotator(server, cid, name, tok) for name, tok in sorted(tokens.items())]
    seconds = _run_all(annotators)
    errors = [e for a in annotators for e in a.errors]
    assert not errors, errors[:5]
    acked = {k: v for a in annotators for k, v in a.acked.items()}
    assert all(len(a.acked) == PER_ANNOTATOR for a in annotators)
    assert (
        sum(a.duplicates for a in annotators) >= N_ANNOTATORS * PER_ANNOTATOR // 5
    )  # the deliberate retries
    n, distinct, rows = _count_rows(server.db_url)
    assert n == distinct == len(acked) == N_ANNOTATORS * PER_ANNOTATOR
    assert {(jid, key) for key, jid in acked.items()} == set(rows)
    for _name, tok in tokens.items():
        nxt = server.api("GET", f"/api/campaigns/{cid}/next", tok).json()
        assert nxt["task"] is None and nxt["progress"]["submitted"] == PER_ANNOTATOR
    print(f"\n{n} judgments from {N_ANNOTATORS} concurrent clients in {seconds:.1f}s ({n / seconds:.0f}/s)")


def test_concurrent_annotators_sqlite(live_server: Any) -> None:
    _check_concurrent_run(live_server)


@pytest.mark.postgres
def test_concurrent_annotators_postgres(server_factory: Any, pg_url: str) -> None:
    _check_concurrent_run(server_factory(pg_url))


def test_worker_processes_share_one_sqlite_file(server_factory: Any) -> None:
    """`serve --workers 2`: two processes write the same SQLite file; still exactly once each."""
    server = server_factory(extra_args=("--workers", "2"))
    cid, tokens = _setup(server, 4, 10, overlap=2)
    annotators = [Annotator(server, cid, name, tok, retry_every=3) for name, tok in sorted(tokens.items())]
    _run_all(annotators)
    assert not [e for a in annotators for e in a.errors]
    acked = {k: v for a in annotators for k, v in a.acked.items()}
    n, distinct, rows = _count_rows(server.db_url)
    assert n == distinct == len(acked) == 40
    assert {(jid, key) for key, jid in acked.items()} == set(rows)


def _integrity(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_kill_9_mid_load_keeps_every_acknowledged_judgment(server_factory: Any, db_url: str) -> None:
    """On SQLite and (with PREFLOOP_TEST_PG_URL) PostgreSQL."""
    server = server_factory(db_url)
    sqlite = db_url.startswith("sqlite")
    cid, tokens = _setup(server, 10, 40, overlap=1)
    stop = threading.Event()
    annotators = [Annotator(server, cid, name, tok, stop=stop) for name, tok in sorted(tokens.items())]
    threads = [threading.Thread(target=a.run) for a in annotators]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(len(a.acked) for a in annotators) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL while the clients are still submitting
    stop.set()
    for t in threads:
        t.join(60)
    assert not [e for a in annotators for e in a.errors]
    acked = {k: v for a in annotators for k, v in a.acked.items()}
    assert len(acked) >= 100, "the load did not get going before the kill"
    assert len(acked) < 400, "the kill came after the load had finished"

    db_path = Path(server.db_url.split("///", 1)[1]) if sqlite else None
    if db_path:
        assert _integrity(db_path) == "ok"
    restarted = server_factory(server.db_url)
    _, _, rows = _count_rows(server.db_url)
    stored = dict((key, jid) for jid, key in rows)
    missing = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert not missing, f"acknowledged but lost: {list(missing)[:5]}"

    # Clients retry what was in flight: committed-but-unacknowledged ones come back as duplicates.
    attempted = {key: (task, body) for a in annotators for (task, key), body in a.attempted.items()}
    with restarted.client(None) as client:
        for a in annotators:
            for (task, key), body in a.attempted.items():
                if key in acked:
                    continue
                r = client.post(
                    f"/api/tasks/{task}/submit", json=body, headers={"Authorization": f"Bearer {a.token}"}
                )
                assert r.status_code == 200, r.text
                assert r.json()["duplicate"] == (key in stored)
    n, distinct, _ = _count_rows(server.db_url)
    assert n == distinct == len(attempted)
    restarted.stop()
    if db_path:
        assert _integrity(db_path) == "ok"
