"""Load test of the feedback server: N annotator clients x M judgments against a real server process.

    .venv/bin/python benchmarks/feedback_load.py --clients 20 --judgments 50
    .venv/bin/python benchmarks/feedback_load.py --db postgresql://postgres@127.0.0.1:5432/bench
    .venv/bin/python benchmarks/feedback_load.py --profile runs/feedback-profile   # + py-spy of the server

Starts `prefloop serve` in a subprocess on a free loopback port (SQLite in a temporary directory
unless --db is given; a PostgreSQL database given with --db should be empty or disposable),
creates a campaign with clients x judgments / overlap items, then runs one thread per client, each
doing GET /next + POST /submit until its tasks are done. Reports submitted judgments per second
and p50 / p99 latency of the submit and next requests, and checks that the database holds
exactly one row per acknowledged judgment.

--profile DIR attaches py-spy (pip install py-spy) to the server for the load phase and writes
its folded stacks (DIR/<db>.folded) and a summary (DIR/<db>.txt). py-spy runs with --gil: it
samples the thread holding the GIL, i.e. where the server process spends its Python CPU time.
The summary gives the share of samples per layer (each sample goes to the innermost frame that
belongs to a layer: database driver, SQLAlchemy, pydantic, JSON, Markdown, thread hand-offs,
prefloop's own code, else the HTTP stack) and the functions with the most samples.
`server_cpu_ms_per_judgment` (CPU time of the server process / judgments) is measured always.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, workdir: Path, password: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - the server process owns it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefloop.cli",
            "serve",
            "--db",
            db_url,
            "--port",
            str(port),
            "--admin-password",
            password,
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {workdir / 'server.log'}")
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))] if values else float("nan")


LAYERS = [  # first match wins, tested on each stack from the innermost frame outwards
    ("commit (fsync)", ("commit (sqlite3", "_do_commit", "do_commit")),
    ("database driver", ("sqlite3", "psycopg", "cursor.py")),
    ("password / token hashing", ("scrypt", "hash_token", "hmac")),
    ("JSON encode / decode", ("json/", "jsonable_encoder", "serialize_response")),
    ("pydantic validation", ("pydantic",)),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("Markdown rendering", ("markdown_it", "nh3", "rendering.py")),
    ("thread hand-off / waiting", ("threading.py", "to_thread", "anyio", "queue.py")),
    ("app code (prefloop)", ("prefloop/",)),
    (
        "HTTP stack (uvicorn, starlette, fastapi)",
        ("uvicorn", "h11", "httptools", "starlette", "fastapi", "asyncio"),
    ),
]


def summarize_profile(folded: Path) -> str:
    """Per-layer shares and the top functions of a py-spy folded-stack file."""
    from collections import Counter

    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaves[frames[-1]] += n
        for frame in reversed(frames):
            layer = next((name for name, keys in LAYERS if any(k in frame for k in keys)), None)
            if layer:
                layers[layer] += n
                break
        else:
            layers["other (app code, idle)"] += n
    lines = [f"{total} samples"]
    lines += [f"{100 * n / max(total, 1):5.1f}%  {name}" for name, n in layers.most_common()]
    lines += ["", "top functions (self):"]
    lines += [f"{100 * n / max(total, 1):5.1f}%  {f}" for f, n in leaves.most_common(15)]
    return "\n".join(lines)


def run(
    db_url: str | None,
    clients: int,
    judgments: int,
    overlap: int,
    k: int,
    workers: int = 1,
    profile: Path | None = None,
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="prefloop-load-"))
    db_url = db_url or f"sqlite:///{workdir / 'load.db'}"
    password = "load-test-password"
    proc, base = start_server(db_url, workdir, password, workers)
    try:
        admin_token = httpx.post(base + "/api/login", json={"name": "admin", "password": password}).json()[
            "token"
        ]
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin_token}"}, timeout=120)
        cid = admin.post(
            "/api/campaigns",
            json={"name": "load", "feedback_types": ["pairwise", "ranking", "rating"], "overlap": overlap},
        ).json()["id"]
        n_items = clients * judgments // overlap
        items = [
            {
                "prompt": f"prompt {i}",
                "responses": [{"text": f"answer {i}.{j}", "model": f"m{j}"} for j in range(k)],
            }
            for i in range(n_items)
        ]
        admin.post(f"/api/campaigns/{cid}/items", json={"items": items}).raise_for_status()
        names = [f"load{i:03d}" for i in range(clients)]
        annotators = admin.post(f"/api/campaigns/{cid}/annotators", json={"names": names}).json()[
            "annotators"
        ]
        tokens = [a["token"] for a in annotators]

        submit_lat: list[float] = []
        next_lat: list[float] = []
        acked: list[int] = []
        lock = threading.Lock()

        def client(token: str) -> None:
            mine_s, mine_n, mine_ids = [], [], []
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
                for _n in range(judgments):
                    t0 = time.perf_counter()
                    task = c.get(f"/api/campaigns/{cid}/next").json()["task"]
                    mine_n.append(time.perf_counter() - t0)
                    if task is None:
                        break
                    ids = [r["id"] for r in task["responses"]]
                    body = {
                        "idempotency_key": f"{token[:8]}-{task['task_id']}",
                        "ranking": [[i] for i in ids],
                        "pairwise": {"a": ids[0], "b": ids[1], "choice": "a", "strength": "better"},
                    }
                    t0 = time.perf_counter()
                    r = c.post(f"/api/tasks/{task['task_id']}/submit", json=body)
                    mine_s.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    mine_ids.append(r.json()["judgment_id"])
            with lock:
                submit_lat.extend(mine_s)
                next_lat.extend(mine_n)
                acked.extend(mine_ids)

        threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
        spy = None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            folded = profile / f"{db_url.split(':', 1)[0]}.folded"
            spy = subprocess.Popen(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--subprocesses",
                    "--gil",
                    "--output",
                    str(folded),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let py-spy attach
        cpu0 = cpu_seconds(proc.pid)
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        server_cpu = cpu_seconds(proc.pid) - cpu0
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
            spy.wait(60)
            (profile / folded.with_suffix(".txt").name).write_text(summarize_profile(folded) + "\n")
        stored = admin.get(f"/api/campaigns/{cid}/judgments").json()
        assert len(stored) == len(acked) == len(set(acked)), (len(stored), len(acked))
        return {
            "db": db_url.split(":", 1)[0],
            "clients": clients,
            "workers": workers,
            "judgments": len(acked),
            "seconds": round(seconds, 2),
            "judgments_per_s": round(len(acked) / seconds, 1),
            "requests_per_s": round((len(acked) + len(next_lat)) / seconds, 1),
            "submit_p50_ms": round(1000 * statistics.median(submit_lat), 1),
            "submit_p99_ms": round(1000 * percentile(submit_lat, 99), 1),
            "next_p50_ms": round(1000 * statistics.median(next_lat), 1),
            "next_p99_ms": round(1000 * percentile(next_lat, 99), 1),
            "server_cpu_ms_per_judgment": round(1000 * server_cpu / max(len(acked), 1), 2),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 1),
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--judgments", type=int, default=50, help="judgments per client")
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--responses", type=int, default=3, help="responses per item (K)")
    p.add_argument("--workers", type=int, default=1, help="server processes (prefloop serve --workers)")
    p.add_argument(
        "--db", action="append", default=[], help="database URL (repeat for several); default SQLite"
    )
    p.add_argument("--profile", type=Path, default=None, help="directory for py-spy profiles of the server")
    args = p.parse_args()
    for db in args.db or [None]:
        result = run(
            db, args.clients, args.judgments, args.overlap, args.responses, args.workers, args.profile
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
