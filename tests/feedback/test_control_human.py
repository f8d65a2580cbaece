"""`prefloop control --teacher human` end to end through a real feedback server: the loop posts clip
pairs, a scripted annotator answers through the HTTP API (as the annotation page does), the loop
turns the answers into labels; an interrupted run resumes without losing them; bad input is one line.

The annotator knows which clip shows segment a by comparing the served bytes with the clips the
loop kept in OUTPUT/human/clips (the campaign is anonymous: the display order is shuffled), so each
expected label is known: segment a better -> 1, b -> 0, equal -> ½, can't tell -> dropped.
"""

from __future__ import annotations

import _thread
import itertools
import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("pygame", reason="CartPole's rgb_array frames need pygame (gymnasium[classic-control])")

from prefloop.control.envs import ControlError
from prefloop.control.loop import ControlConfig, main, train

pytestmark = pytest.mark.timeout(900)

# 1 env x 32 steps x 2 iterations = 64 CartPole steps, 8 labels in two rounds of 4
TINY = dict(
    env="CartPole-v1",
    num_envs=1,
    rollout_steps=32,
    total_steps=64,
    labels=8,
    query_batch=4,
    initial_label_share=0.5,
    segment_length=10,
    ensemble_size=2,
    reward_epochs=5,
    eval_episodes=1,
    eval_pairs=20,
    teacher="human",
    poll_s=0.2,
    clip_width=64,
    human_wait_s=300.0,  # a safety net: a broken test fails with a message instead of waiting forever
)
INTENTS = ["seg_a", "seg_b", "equal", "cant_tell"]
EXPECTED = {"seg_a": 1.0, "seg_b": 0.0, "equal": 0.5, "cant_tell": None}


class ScriptedAnnotator(threading.Thread):
    """Answers clip tasks through the API until stopped, or after `limit` answers; then, with
    `interrupt`, waits until the loop has recorded them and presses Ctrl-C (KeyboardInterrupt in
    the main thread, where the loop waits for the other answers)."""

    def __init__(
        self,
        server: Any,
        cid_of: Any,
        token: str,
        out: Path,
        limit: int | None = None,
        interrupt: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.cid_of, self.token, self.out, self.limit = server, cid_of, token, out, limit
        self.interrupt = interrupt
        self.stop = threading.Event()
        self.answered: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.intents = itertools.cycle(INTENTS)

    def run(self) -> None:
        try:
            while not self.stop.is_set() and (self.limit is None or len(self.answered) < self.limit):
                cid = self.cid_of()
                task = None
                if cid is not None:
                    r = self.server.api("GET", f"/api/campaigns/{cid}/next", token=self.token)
                    task = r.json()["task"] if r.status_code == 200 else None
                if task is None:
                    time.sleep(0.1)
                    continue
                self.answer(task)
            if self.interrupt:
                given = {a["judgment_id"] for a in self.answered}
                while not given <= {r.get("judgment_id") for r in labels_rows(self.out)}:
                    time.sleep(0.1)
                _thread.interrupt_main()
        except Exception as exc:  # surfaced by the test
            self.errors.append(repr(exc))

    def answer(self, task: dict[str, Any]) -> None:
        rnd, pair = (int(x) for x in re.search(r"round (\d+), pair (\d+)", task["prompt"]).groups())
        seg_a = (self.out / "human" / "clips" / f"r{rnd:04d}-p{pair:03d}-a.gif").read_bytes()
        served = {}
        for resp in task["responses"]:
            got = self.server.api("GET", resp["media"]["url"], token=self.token)
            assert got.status_code == 200 and got.content[:6] == b"GIF89a", got.status_code
            served[resp["id"]] = got.content
        left, right = (resp["id"] for resp in task["responses"])  # as the page shows them
        a_is_left = served[left] == seg_a
        intent = next(self.intents)
        choice = {
            "seg_a": "a" if a_is_left else "b",  # "a" = the left response is better
            "seg_b": "b" if a_is_left else "a",
            "equal": "tie",
            "cant_tell": "cant_tell",
        }[intent]
        body = {
            "idempotency_key": f"task-{task['task_id']}",
            "pairwise": {"a": left, "b": right, "choice": choice},
        }
        r = self.server.api("POST", f"/api/tasks/{task['task_id']}/submit", token=self.token, json=body)
        assert r.status_code == 200, r.text
        self.answered.append(
            {"round": rnd, "pair": pair, "intent": intent, "judgment_id": r.json()["judgment_id"]}
        )


def annotator_account(server: Any, name: str) -> str:
    r = server.api("POST", "/api/users", token=server.admin_token, json={"name": name, "role": "annotator"})
    r.raise_for_status()
    return r.json()["token"]


def setup(server: Any, tmp_path: Path, name: str) -> tuple[dict[str, Any], str, Path]:
    token_file = tmp_path / "admin.token"
    token_file.write_text(f"admin\t{server.admin_token}\n")  # `prefloop campaign token`'s format
    annotator = annotator_account(server, name)
    out = tmp_path / name
    cfg = dict(TINY, feedback_url=server.base_url, feedback_token_file=str(token_file), annotators=[name])
    return cfg, annotator, out


def campaign_of(out: Path) -> Any:
    def get() -> int | None:
        state = out / "human" / "state.json"
        return json.loads(state.read_text())["campaign"] if state.exists() else None

    return get


def labels_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "human" / "labels.jsonl").read_text().splitlines()]


def test_people_label_clip_pairs_through_the_server(module_server: Any, tmp_path: Path) -> None:
    cfg, token, out = setup(module_server, tmp_path, "clip-annotator")
    annotator = ScriptedAnnotator(module_server, campaign_of(out), token, out)
    annotator.start()
    try:
        train(ControlConfig(output_dir=str(out), **cfg))
    finally:
        annotator.stop.set()
        annotator.join(120)
    assert not annotator.errors
    summary = json.loads((out / "summary.json").read_text())
    rows = labels_rows(out)
    assert summary["labels_used"] == 8 and len(rows) == 8
    assert summary["teacher"].startswith("people:campaign-")
    by_pair = {(r["round"], r["pair"]): r for r in rows}
    for given in annotator.answered:
        row = by_pair[(given["round"], given["pair"])]
        assert row["judgment_id"] == given["judgment_id"]
        assert row["label"] == EXPECTED[given["intent"]], (given, row)
    identical = [r for r in rows if r["how"] == "identical clips"]  # a tie without asking anyone
    assert all(r["label"] == 0.5 for r in identical)
    assert len(annotator.answered) + len(identical) == 8
    dropped = sum(r["label"] is None for r in rows)
    assert summary["labels_answered"] == 8 - dropped >= 6  # can't tell: dropped, nothing else
    cid = campaign_of(out)()
    info = module_server.api("GET", f"/api/campaigns/{cid}", token=module_server.admin_token).json()
    assert info["feedback_types"] == ["pairwise"] and info["n_items"] == len(annotator.answered)
    assert len(list((out / "human" / "clips").glob("*.gif"))) == 16
    assert (out / "agent" / "agent.pt").exists() and (out / "reward_model").is_dir()


def test_an_interrupted_run_resumes_with_the_labels_already_given(module_server: Any, tmp_path: Path) -> None:
    cfg, token, out = setup(module_server, tmp_path, "resume-annotator")
    # Run 1: the person answers two pairs of the first round; Ctrl-C while the loop waits for more.
    first = ScriptedAnnotator(module_server, campaign_of(out), token, out, limit=2, interrupt=True)
    # Python ignores Ctrl-C in a process started in the background (SIGINT inherited as ignored),
    # and then interrupt_main does nothing: handle it as an interactive run does.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        first.start()
        with pytest.raises(KeyboardInterrupt):
            train(ControlConfig(output_dir=str(out), **cfg))
    finally:
        signal.signal(signal.SIGINT, previous)
    first.join(120)
    assert not first.errors
    kept = labels_rows(out)
    state = json.loads((out / "human" / "state.json").read_text())
    assert state["rounds"][0]["pairs"] == 4
    given_first = {a["judgment_id"] for a in first.answered}
    assert len(given_first) == 2 and given_first <= {r.get("judgment_id") for r in kept}
    round0_posted = sum(i is not None for i in state["rounds"][0]["items"])

    # Run 2, the same command: it waits for the rest of round 1 (nothing posted again), then goes on.
    second = ScriptedAnnotator(module_server, campaign_of(out), token, out)
    second.intents = itertools.islice(itertools.cycle(INTENTS), 2, None)  # the script goes on where it was
    second.start()
    try:
        train(ControlConfig(output_dir=str(out), **cfg))
    finally:
        second.stop.set()
        second.join(120)
    assert not second.errors
    rows = labels_rows(out)
    assert len(rows) == 8 and len({(r["round"], r["pair"]) for r in rows}) == 8  # no pair asked twice
    assert given_first <= {r.get("judgment_id") for r in rows}  # the early labels are still there
    round0_items = [r["pair"] for r in second.answered if r["round"] == 0]
    assert len(round0_items) == round0_posted - len(given_first)  # the items of run 1, not new ones
    assert json.loads((out / "human" / "state.json").read_text())["rounds"][0] == state["rounds"][0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == 8
    assert summary["labels_answered"] == sum(r["label"] is not None for r in rows)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--feedback-url", "http://127.0.0.1:9"], "cannot reach the feedback server"),
        (["--campaign", "987654"], "--campaign 987654: not usable on"),
        (
            ["--feedback-token-file", "/nonexistent/admin.token"],
            "--feedback-token-file /nonexistent/admin.token: no such file",
        ),
    ],
)
def test_bad_server_or_campaign_is_a_one_line_error(
    module_server: Any, tmp_path: Path, capsys: Any, extra: list[str], message: str
) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(module_server.admin_token)
    argv = [
        "--teacher",
        "human",
        "--feedback-url",
        module_server.base_url,
        "--feedback-token-file",
        str(token_file),
    ]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *extra, "--output-dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing ran


def test_a_round_nobody_answers_in_time_stops_and_a_rerun_picks_up_the_answer(
    module_server: Any, tmp_path: Path
) -> None:
    """--human-wait-s: the teacher stops with one line, keeping the posted item; the answer given
    afterwards reaches the next run's teacher without the pair being posted again."""
    import numpy as np

    from prefloop.control.clips import encode_frame
    from prefloop.control.human import connect
    from prefloop.control.segments import SegmentBatch

    cfg, token, out = setup(module_server, tmp_path, "late-annotator")

    def segment(color: int) -> SegmentBatch:
        frame = encode_frame(np.full((6, 8, 3), color, dtype=np.uint8), 8)
        z = np.zeros((1, 3, 1))
        return SegmentBatch(z, z, np.zeros((1, 3)), np.array([0]), [[frame] * 3], np.zeros((1, 3), bool))

    def teacher() -> Any:
        return connect(
            module_server.base_url, cfg["feedback_token_file"], None, ["late-annotator"], "CartPole-v1", out,
            fps=10, wait_s=1.0, poll_s=0.2,
        )  # fmt: skip

    with pytest.raises(ControlError, match=r"no answer for 1 of 1 pairs of round 0 within --human-wait-s 1"):
        teacher().compare_segments(segment(0), segment(255))
    cid = campaign_of(out)()
    (item_id,) = json.loads((out / "human" / "state.json").read_text())["rounds"][0]["items"]
    late = ScriptedAnnotator(module_server, campaign_of(out), token, out, limit=1)
    late.run()  # the person answers after the run stopped
    assert not late.errors and late.answered[0]["intent"] == "seg_a"
    ((a, b, prefs),) = teacher().resume()
    assert prefs[0].which == "a" and prefs[0].meta["item_id"] == item_id
    assert a.obs.shape == (1, 3, 1) and len(b) == 1
    info = module_server.api("GET", f"/api/campaigns/{cid}", token=module_server.admin_token).json()
    assert info["n_items"] == 1  # not posted again
