"""`prefloop label`: an AI judge or a simulated annotator labels a campaign through the feedback server.

The teacher joins campaign N as a named annotator ("ai:smollm2", "sim:mistake-0.1") and works
through its tasks exactly as a person does, over the server's public REST API: GET /next,
POST /submit (or /skip), with an idempotency key per task so a rerun never submits twice. Its
judgments then sit next to the people's: the report's agreement table shows how well the AI
judge agrees with them, and the leaderboard and exports work unchanged.

Server: `--url http://host:port` with an admin token (`--token` or $PREFLOOP_ADMIN_TOKEN), or
`--db URL` to run the server's app in this process over that database (an admin token is
issued in the database, as `prefloop campaign token` does).

What is submitted per task, for the feedback types the campaign enables:
    ranking   teacher.rank over all responses (the AI judge: expected wins over both-order pairs)
    pairwise  teacher.compare(first two responses as shown); strength = nearest named level
    rating    teacher.rate mapped linearly from the teacher's range onto the campaign's scale
    binary    teacher.judge_binary per response
A teacher that abstains (a skip, or a ranking of None) skips the task.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefloop.teachers.factory import TeacherOptions, make_teacher
from prefloop.teachers.people import FeedbackClient, strength_level


@dataclass
class LabelConfig(TeacherOptions):
    """Label a feedback campaign with an AI judge or a simulated annotator, as a named annotator."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    campaign: int = 0
    """The campaign id to label."""
    db: str | None = None
    """Feedback database URL (sqlite:///feedback.db, postgresql://...): run the server app in-process."""
    url: str | None = None
    """A running feedback server (http://host:port) instead of --db."""
    token: str | None = None
    """Admin token for --url (default: $PREFLOOP_ADMIN_TOKEN)."""
    name: str | None = None
    """Annotator name (default: the teacher's, e.g. 'ai:smollm2', 'sim:mistake-0.1')."""
    raise_overlap: bool = False
    """Raise the campaign's overlap by one first, so every item gets one more annotator (this teacher)."""
    limit: int | None = None
    """Label at most this many tasks (None: all assigned)."""


@contextmanager
def _server(cfg: LabelConfig):
    """An httpx-like client on the server's root and an admin token."""
    if cfg.url:
        import httpx

        token = cfg.token or os.environ.get("PREFLOOP_ADMIN_TOKEN")
        if not token:
            raise ValueError("--url needs an admin token: --token or $PREFLOOP_ADMIN_TOKEN")
        with httpx.Client(base_url=cfg.url.rstrip("/"), timeout=120) as http:
            yield http, token
        return
    if not cfg.db:
        raise ValueError("give the feedback server: --db URL (in-process) or --url http://host:port")
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from prefloop.feedback import auth
    from prefloop.feedback.app import create_app
    from prefloop.feedback.store import Store, User, upgrade

    upgrade(cfg.db)
    store = Store(cfg.db)
    try:
        with store.write() as s:
            admin = s.scalars(select(User).where(User.role == "admin").order_by(User.id)).first()
            if admin is None:
                admin, token = auth.create_user(s, "admin", "admin")
            else:
                token = auth.issue_token(s, admin)
    finally:
        store.dispose()
    with TestClient(create_app(cfg.db, migrate=False)) as http:
        yield http, token


def _join(admin: FeedbackClient, http: Any, cfg: LabelConfig, name: str) -> FeedbackClient:
    """Make `name` an annotator of the campaign (an account if new) and return its client."""
    cid = cfg.campaign
    if cfg.raise_overlap:
        overlap = admin.call("GET", f"/api/campaigns/{cid}")["overlap"]
        admin.call("PATCH", f"/api/campaigns/{cid}", json={"overlap": overlap + 1})
    joined = admin.call("POST", f"/api/campaigns/{cid}/annotators", json={"names": [name]})
    token = joined["annotators"][0]["token"] or admin.call("POST", f"/api/users/{name}/tokens")["token"]
    return FeedbackClient(http, token)


def _scale(value: float, src: tuple[float, float], dst: tuple[float, float]) -> float:
    lo, hi = src
    t = 0.5 if hi == lo else (value - lo) / (hi - lo)
    t = min(max(t, 0.0), 1.0)
    return round(dst[0] + t * (dst[1] - dst[0]), 4)


def submission(teacher: Any, task: dict[str, Any]) -> dict[str, Any] | None:
    """The submit body for one task (without the idempotency key), or None to skip it."""
    prompt, responses = task["prompt"], task["responses"]
    ids, texts = [r["id"] for r in responses], [r["text"] for r in responses]
    types = set(task["feedback_types"])
    body: dict[str, Any] = {}
    if "ranking" in types and len(texts) >= 2:
        ranks = teacher.rank(prompt, texts)
        if ranks is None:
            return None
        body["ranking"] = [[ids[i] for i in range(len(ids)) if ranks[i] == r] for r in sorted(set(ranks))]
    if "pairwise" in types and len(texts) >= 2:
        pref = teacher.compare(prompt, texts[0], texts[1])
        if pref.skipped and not body:
            return None
        if not pref.skipped:
            pw: dict[str, Any] = {"a": ids[0], "b": ids[1], "choice": pref.which}
            if pref.which in ("a", "b") and (level := strength_level(pref.strength)):
                pw["strength"] = level
            body["pairwise"] = pw
    if "binary" in types:
        thumbs = {str(i): teacher.judge_binary(prompt, t) for i, t in zip(ids, texts)}
        thumbs = {k: v for k, v in thumbs.items() if v is not None}
        if thumbs:
            body["thumbs"] = thumbs
    if "rating" in types:
        src = getattr(teacher, "rating_range", (-1.0, 1.0))
        dst = tuple(task["rating_scale"])
        body["ratings"] = {str(i): _scale(teacher.rate(prompt, t), src, dst) for i, t in zip(ids, texts)}
    return body or None


def run(cfg: LabelConfig) -> dict[str, Any]:
    """Label the campaign; returns counts and, for an AI judge, its summary (position bias, cache hits)."""
    if cfg.campaign < 1:
        raise ValueError("--campaign N is required (the campaign id)")
    teacher = make_teacher(cfg)
    name = cfg.name or teacher.name
    counts = {"submitted": 0, "skipped": 0}
    started = time.perf_counter()
    with _server(cfg) as (http, admin_token):
        admin = FeedbackClient(http, admin_token)
        me = _join(admin, http, cfg, name)
        cid = cfg.campaign
        while cfg.limit is None or counts["submitted"] + counts["skipped"] < cfg.limit:
            answer = me.call("GET", f"/api/campaigns/{cid}/next")
            task = answer["task"]
            if task is None:
                break
            body = submission(teacher, task)
            if body is None:
                me.call("POST", f"/api/tasks/{task['task_id']}/skip")
                counts["skipped"] += 1
            else:
                body["idempotency_key"] = f"{name}:task-{task['task_id']}"
                me.call("POST", f"/api/tasks/{task['task_id']}/submit", json=body)
                counts["submitted"] += 1
            progress = answer.get("progress", {})
            done = counts["submitted"] + counts["skipped"]
            print(
                f"  {name}: task {task['task_id']} done ({done} this run; {progress})",
                file=sys.stderr,
                flush=True,
            )
    out: dict[str, Any] = {
        "annotator": name,
        "campaign": cfg.campaign,
        **counts,
        "seconds": time.perf_counter() - started,
    }
    if hasattr(teacher, "summary"):
        out["judge"] = teacher.summary()
    return out


def main(argv: list[str], command: str = "label") -> None:
    import json

    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.models.load import ModelLoadError
    from prefloop.teachers.judge import JudgeError
    from prefloop.teachers.people import FeedbackAPIError

    cfg = parse_args(LabelConfig, argv, prog=f"prefloop {command}", description=LabelConfig.__doc__)
    try:
        result = run(cfg)
    except (ConfigError, ValueError, FileNotFoundError, ModelLoadError, JudgeError, FeedbackAPIError) as exc:
        fail(str(exc))
    print(json.dumps(result, indent=2))
