"""People as the control loop's teacher: segment pairs as clips in a pairwise campaign of the feedback server.

`ClipTeacher` is a `SegmentTeacher` (`segments.py`), like the simulated B-Pref teachers: the loop
hands it pairs of segments and gets one `Preference` per pair. Through the server's REST API only
(an admin token), for each query round it

1. renders both segments of every pair as GIF clips (`clips.segment_gif`) and keeps them, with the
   segments themselves, in ``OUTPUT/human/`` (before anything is sent);
2. uploads the clips (``POST /api/campaigns/{cid}/media``) and adds one item per pair whose two
   responses show them, segment a first (``POST /api/campaigns/{cid}/items``): the campaign's
   annotators get the tasks at once; the item ids go into ``OUTPUT/human/state.json``;
3. polls the campaign's judgments (``GET /api/campaigns/{cid}/judgments``) until every pair has an
   answer, printing progress, and turns each into a `Preference` (`people.preference_of_judgment`):
   left / right = the clip's segment preferred, equal = a tie (label ½), "can't tell" = a skip
   (the pair is dropped). The first live judgment of an item counts (with overlap k > 1 the others
   are left to the campaign's statistics). An item whose tasks were all skipped, with no pending
   task left, is dropped too (``GET /api/campaigns/{cid}/items/status``), so the loop never waits
   for nobody. Every answer is appended to ``OUTPUT/human/labels.jsonl`` as it arrives.

Pairs whose two clips are the same file (the same steps drawn twice) are a tie without asking.

Resuming: a run stopped while it waits (Ctrl-C, a crash, ``--human-wait-s`` running out) keeps
its campaign, its items and every label received. Rerunning the same command finds
``OUTPUT/human/state.json``: `resume` posts whatever never reached the server, waits for the
answers still missing, and hands every asked pair back to the loop, which counts them against the
label budget and trains the reward predictor on them before it asks anything new. The agent and
the environments start afresh (steps are cheap; people's labels are not).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prefloop.control.clips import segment_gif
from prefloop.control.envs import ControlError
from prefloop.control.segments import SegmentBatch, label_of
from prefloop.teachers.base import Preference
from prefloop.teachers.people import FeedbackAPIError, FeedbackClient, preference_of_judgment

__all__ = ["TOKEN_ENV", "ClipTeacher", "connect"]

TOKEN_ENV = "PREFLOOP_FEEDBACK_TOKEN"
"""Environment variable holding the admin token when no --feedback-token-file is given."""
STATE_VERSION = 1

TASK_HINTS = {
    "CartPole": "keeping the pole upright (and the cart on the track) for as long as possible",
    "Pendulum": "swinging the pendulum up and holding it upright with little effort",
    "MountainCar": "driving the car up the hill on the right",
    "Acrobot": "swinging the lower link up above the bar",
    "Hopper": "hopping forward quickly without falling",
    "HalfCheetah": "running forward quickly",
    "Walker2d": "walking forward quickly without falling",
}


def instructions_for(env_id: str) -> str:
    """The campaign's guidelines for clips of `env_id` (Markdown)."""
    hint = next((h for k, h in TASK_HINTS.items() if env_id.startswith(k)), "what the task asks")
    return (
        f"Each task shows two short clips of an agent in **{env_id}**. Which agent does better at "
        f"{hint}?\n\n"
        "- **Left / Right is better**: that clip shows the better behaviour.\n"
        "- **Equal**: both are about as good.\n"
        "- **Can't tell**: you cannot judge from the clips (nothing is learned from this pair).\n\n"
        'A dimmed frame marked "episode over" means the episode had ended there (for example, '
        "the pole fell). The clips loop; watch each at least once."
    )


class ClipTeacher:
    """People judging clip pairs in campaign ``campaign`` (see the module docstring).

    Args:
        client: a `FeedbackClient` with an admin token (its base URL is the server's root).
        url: the server's root URL (for messages: where annotators annotate).
        campaign: the campaign id (pairwise enabled, at least one annotator).
        state_dir: ``OUTPUT/human``: clips, segments, state.json, labels.jsonl.
        fps: frames per second of the clips.
        wait_s: stop (keeping everything) after waiting this long for one round; 0 = wait forever.
        poll_s: seconds between polls of the server.
        log: where progress lines go.
    """

    def __init__(
        self,
        client: FeedbackClient,
        url: str,
        campaign: int,
        state_dir: Path,
        fps: float = 10.0,
        wait_s: float = 0.0,
        poll_s: float = 2.0,
        log: Callable[[str], None] = print,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.client, self.url, self.campaign = client, url.rstrip("/"), campaign
        self.dir = Path(state_dir)
        self.fps, self.wait_s, self.poll_s, self.log = fps, wait_s, poll_s, log
        self.name = f"people:campaign-{campaign}"
        self.state: dict[str, Any] = state or {
            "version": STATE_VERSION,
            "server": self.url,
            "campaign": campaign,
            "rounds": [],
        }
        self.labels: dict[tuple[int, int], dict[str, Any]] = {}
        labels_path = self.dir / "labels.jsonl"
        if labels_path.exists():
            for line in labels_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.labels[(row["round"], row["pair"])] = row

    # ------------------------------------------------------------------ the SegmentTeacher seam

    def compare_segments(self, a: SegmentBatch, b: SegmentBatch) -> list[Preference]:
        """Ask people about the pairs (a_i, b_i): clips, items, then wait for every answer."""
        if a.frames is None or b.frames is None or a.absorbing is None or b.absorbing is None:
            raise ValueError(
                "clips need frames: make the envs with render=True (the loop does for --teacher human)"
            )
        r = len(self.state["rounds"])
        clip_dir = self.dir / "clips"
        clip_dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(a)):
            for side, seg in (("a", a), ("b", b)):
                assert seg.frames is not None and seg.absorbing is not None
                gif = segment_gif(seg.frames[i], seg.absorbing[i], self.fps)
                (clip_dir / f"r{r:04d}-p{i:03d}-{side}.gif").write_bytes(gif)
        np.savez_compressed(
            self.dir / f"round-{r:04d}.npz",
            **{f"{side}_{k}": getattr(seg, k) for side, seg in (("a", a), ("b", b)) for k in SEGMENT_FIELDS},
        )
        self.state["rounds"].append({"pairs": len(a), "items": [None] * len(a)})
        self._save_state()
        self._post(r)
        return self._wait(r)

    def resume(self) -> list[tuple[SegmentBatch, SegmentBatch, list[Preference]]]:
        """Every round asked before this run, with its answers (waiting for those still missing)."""
        out = []
        for r in range(len(self.state["rounds"])):
            self._post(r)
            prefs = self._wait(r)
            with np.load(self.dir / f"round-{r:04d}.npz") as z:
                a, b = (SegmentBatch(**{k: z[f"{side}_{k}"] for k in SEGMENT_FIELDS}) for side in ("a", "b"))
            out.append((a, b, prefs))
        return out

    # ------------------------------------------------------------------ steps of a round

    def _clip(self, r: int, i: int, side: str) -> bytes:
        return (self.dir / "clips" / f"r{r:04d}-p{i:03d}-{side}.gif").read_bytes()

    def _post(self, r: int) -> None:
        """Upload the clips and add the items of round r that are not on the server yet."""
        rnd = self.state["rounds"][r]
        todo, items = [], []
        for i in range(rnd["pairs"]):
            if rnd["items"][i] is not None or (r, i) in self.labels:
                continue
            clip_a, clip_b = self._clip(r, i, "a"), self._clip(r, i, "b")
            if clip_a == clip_b:
                self._record(r, i, {"how": "identical clips", "choice": "tie", "label": 0.5})
                continue
            media = [
                self._call("POST", f"/api/campaigns/{self.campaign}/media", content=clip)["media_id"]
                for clip in (clip_a, clip_b)
            ]
            todo.append(i)
            items.append(
                {
                    "prompt": f"Which clip shows the better behaviour? (round {r}, pair {i})",
                    "responses": [
                        {"media_id": media[0], "model": "segment-a"},
                        {"media_id": media[1], "model": "segment-b"},
                    ],
                }
            )
        if items:
            ids = self._call("POST", f"/api/campaigns/{self.campaign}/items", json={"items": items})[
                "item_ids"
            ]
            for i, item_id in zip(todo, ids):
                rnd["items"][i] = item_id
            self._save_state()

    def _wait(self, r: int) -> list[Preference]:
        """Poll until every pair of round r has an answer; the answers in pair order."""
        rnd = self.state["rounds"][r]
        waiting = {rnd["items"][i]: i for i in range(rnd["pairs"]) if (r, i) not in self.labels}
        started = last_print = time.monotonic()
        shown = -1
        try:
            while waiting:
                try:
                    self._collect(r, waiting)
                except ServerUnreachable as exc:  # a restart of the server while we wait: keep waiting
                    self.log(f"[control] {exc} (still waiting)")
                now = time.monotonic()
                answered = rnd["pairs"] - len(waiting)
                if waiting and (answered != shown or now - last_print >= 30):
                    self.log(
                        f"[control] waiting for people: {answered}/{rnd['pairs']} pairs of round {r} answered "
                        f"({now - started:.0f} s; annotate at {self.url}/annotate/{self.campaign})"
                    )
                    shown, last_print = answered, now
                if waiting and self.wait_s and now - started > self.wait_s:
                    raise ControlError(
                        f"no answer for {len(waiting)} of {rnd['pairs']} pairs of round {r} within "
                        f"--human-wait-s {self.wait_s:g}; the labels received are kept in {self.dir}: "
                        "rerun the same command to resume"
                    )
                if waiting:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self.log(
                f"[control] interrupted while waiting for people: the labels received are kept in {self.dir}; "
                "rerun the same command to resume"
            )
            raise
        prefs = []
        for i in range(rnd["pairs"]):
            row = self.labels[(r, i)]
            which = {1.0: "a", 0.0: "b", 0.5: "tie"}.get(row["label"], "skip")
            prefs.append(Preference(which, meta={k: v for k, v in row.items() if k not in ("round", "pair")}))  # type: ignore[arg-type]
        return prefs

    def _collect(self, r: int, waiting: dict[int, int]) -> None:
        """Record the answers that arrived for the items in ``waiting`` (removing them)."""
        for j in self._call("GET", f"/api/campaigns/{self.campaign}/judgments"):
            i = waiting.pop(j["item_id"], None)
            if i is None:
                continue
            ids = [resp["id"] for resp in j["responses"]]
            pref = preference_of_judgment(j, ids[0], ids[1])
            label = label_of(pref)
            pw = j["payload"].get("pairwise") or {}
            self._record(
                r,
                i,
                {
                    "how": "judgment",
                    "item_id": j["item_id"],
                    "judgment_id": j["judgment_id"],
                    "annotator": j["annotator"],
                    "choice": pw.get("choice", "ranking"),
                    "label": None if math.isnan(label) else label,
                },
            )
        if waiting:
            item_ids = ",".join(str(item) for item in waiting)
            status = self._call(
                "GET", f"/api/campaigns/{self.campaign}/items/status", params={"ids": item_ids}
            )
            for item_id in list(waiting):
                st = status[str(item_id)]
                if st["pending"] == 0 and st["judgments"] == 0 and st["skipped"] > 0:
                    i = waiting.pop(item_id)
                    self._record(r, i, {"how": "skipped by everyone", "item_id": item_id, "label": None})

    # ------------------------------------------------------------------ persistence and HTTP

    def _record(self, r: int, i: int, row: dict[str, Any]) -> None:
        row = {"round": r, "pair": i, **row}
        self.labels[(r, i)] = row
        with open(self.dir / "labels.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _save_state(self) -> None:
        save_state(self.dir, self.state)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return call(self.client, self.url, method, path, **kwargs)


SEGMENT_FIELDS = ("obs", "actions", "rewards", "episodes", "absorbing")


class ServerUnreachable(ControlError):
    """No answer from the feedback server at all (refused connection, timeout)."""


def save_state(state_dir: Path, state: dict[str, Any]) -> None:
    """state.json, written atomically (a crash leaves the old or the new file, never half of one)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_dir / "state.json")


def call(client: FeedbackClient, url: str, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; an unreachable server or a refusal is a one-line `ControlError`."""
    import httpx

    try:
        return client.call(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"--feedback-url {url}: cannot reach the feedback server ({type(exc).__name__}: {exc}); "
            "start it with `prefloop serve` or fix the URL"
        ) from None
    except FeedbackAPIError as exc:
        raise ControlError(f"the feedback server at {url} refused: {exc}") from None


def read_token(token_file: str | None) -> str:
    """The admin token: the first line of ``token_file`` (its last field), else $PREFLOOP_FEEDBACK_TOKEN."""
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise ControlError(f"--feedback-token-file {token_file}: no such file")
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        token = lines[0][-1] if lines else ""  # a bare token, or `prefloop campaign token`'s "name<TAB>token"
        if not token:
            raise ControlError(f"--feedback-token-file {token_file}: the file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ControlError(
            f"--teacher human needs an admin token of the feedback server: --feedback-token-file FILE or ${TOKEN_ENV} "
            "(e.g. `prefloop campaign token --db sqlite:///feedback.db --name admin > admin.token`)"
        )
    return token


def connect(
    url: str,
    token_file: str | None,
    campaign: int | None,
    annotators: list[str],
    env_id: str,
    output_dir: Path,
    fps: float,
    wait_s: float,
    poll_s: float,
    instructions: str | None = None,
    http: Any = None,
) -> ClipTeacher:
    """A `ClipTeacher` on the server at ``url``: checks the token (an admin's), reuses the campaign
    of an earlier run in ``output_dir`` (or ``campaign``), else creates one; adds ``annotators``
    (new accounts' tokens are printed once). Every problem is a one-line `ControlError`."""
    import httpx

    url = url.rstrip("/")
    token = read_token(token_file)
    client = FeedbackClient(http or httpx.Client(base_url=url, timeout=30.0), token)
    me = call(client, url, "GET", "/api/me")
    if me.get("role") != "admin":
        raise ControlError(
            f"the token of --feedback-token-file / ${TOKEN_ENV} is {me.get('name')!r}'s, an annotator's: "
            "the loop needs an admin token"
        )
    state_dir = output_dir / "human"
    state = None
    if (state_dir / "state.json").exists():
        state = json.loads((state_dir / "state.json").read_text())
        if campaign is not None and campaign != state["campaign"]:
            raise ControlError(
                f"--campaign {campaign}: {output_dir} already asks campaign {state['campaign']}; "
                "drop --campaign to resume, or use a new --output-dir"
            )
        campaign = int(state["campaign"])
    if campaign is None:
        created = call(
            client,
            url,
            "POST",
            "/api/campaigns",
            json={
                "name": f"prefloop control: {env_id} ({output_dir.name})",
                "feedback_types": ["pairwise"],
                "overlap": 1,
                "anonymous": True,
                "instructions": instructions or instructions_for(env_id),
            },
        )
        campaign = int(created["id"])
    try:
        info = client.call("GET", f"/api/campaigns/{campaign}")
    except FeedbackAPIError as exc:
        raise ControlError(f"--campaign {campaign}: not usable on {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise ControlError(f"--feedback-url {url}: cannot reach the feedback server ({exc})") from None
    if "pairwise" not in info["feedback_types"]:
        raise ControlError(
            f"--campaign {campaign} does not collect pairwise choices (it collects {info['feedback_types']}); "
            "enable pairwise or leave --campaign out to create a campaign"
        )
    if annotators:
        joined = call(
            client, url, "POST", f"/api/campaigns/{campaign}/annotators", json={"names": annotators}
        )
        for a in joined["annotators"]:
            if a["token"]:
                print(f"[control] new annotator {a['name']}: token {a['token']} (shown once)", flush=True)
        info = call(client, url, "GET", f"/api/campaigns/{campaign}")
    if not info.get("n_annotators"):
        raise ControlError(
            f"campaign {campaign} on {url} has no annotators: add some with --annotators NAME ... "
            f"(or `prefloop campaign add-annotators --campaign {campaign} --names NAME`)"
        )
    if state is None:
        state = {"version": STATE_VERSION, "server": url, "campaign": campaign, "env": env_id, "rounds": []}
        save_state(state_dir, state)
    state_dir.mkdir(parents=True, exist_ok=True)
    teacher = ClipTeacher(client, url, campaign, state_dir, fps, wait_s, poll_s, state=state)
    print(
        f"[control] people label clip pairs in campaign {campaign}: {url}/annotate/{campaign} "
        f"({info['n_annotators']} annotators; {len(teacher.labels)} labels from earlier runs)",
        flush=True,
    )
    return teacher
