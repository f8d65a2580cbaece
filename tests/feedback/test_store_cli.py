"""`prefloop campaign ...` on the database directly: create, annotators, items, export, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from prefloop.feedback import cli
from prefloop.feedback.app import TaskIds, load_item, submit_judgment
from prefloop.feedback.auth import user_for_token
from prefloop.feedback.schemas import SubmitIn
from prefloop.feedback.store import Assignment, Judgment, Response, Store, server_setting, upgrade, utcnow


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tokens(out: str) -> dict[str, str]:
    return {
        line.split("\t")[0].strip(): line.split("\t")[1] for line in out.splitlines() if line.startswith("  ")
    }


def test_campaign_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    generated = _write_jsonl(
        tmp_path / "samples.jsonl",
        [  # the `prefloop generate` output format
            {
                "prompt": f"q{i}",
                "responses": [
                    {"text": f"q{i} a", "model": "ckpt-1", "logprob": -3.2},
                    {"text": f"q{i} b", "model": "ckpt-2", "logprob": -4.0},
                ],
            }
            for i in range(4)
        ],
    )
    cli.main(
        [
            "create",
            "--db",
            db,
            "--name",
            "demo",
            "--items",
            str(generated),
            "--feedback-types",
            "pairwise",
            "edit",
            "--overlap",
            "2",
            "--annotators",
            "ann1",
            "ann2",
        ],
        command="campaign",
    )
    out = capsys.readouterr().out
    assert "created campaign 1" in out and "with 4 items" in out
    tokens = _tokens(out)
    assert set(tokens) == {"ann1", "ann2"} and all(len(t) > 30 for t in tokens.values())

    plain = _write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "extra", "responses": ["one", "two"]}])
    cli.main(["add-items", "--db", db, "--campaign", "1", "--items", str(plain)], command="campaign")
    assert "added 1 items, 2 new tasks" in capsys.readouterr().out
    cli.main(["add-annotators", "--db", db, "--campaign", "1", "--names", "ann3"], command="campaign")
    assert "ann3" in _tokens(capsys.readouterr().out)

    # Judgments through the same code path as the API, then export.
    store = Store(db)
    with store.read() as s:
        user = user_for_token(s, tokens["ann1"])
        tasks = s.scalars(
            select(Assignment).where(Assignment.user_id == user.id).order_by(Assignment.id)
        ).all()
        task_ids = TaskIds(server_setting(s, "response_id_key"))
        # the ids the annotator sees (per-task aliases), in item order
        resp = {t.id: task_ids.shown(t.id, load_item(s, t.item_id), shuffle=False).ids for t in tasks}
    for n, t in enumerate(tasks):
        a, b = resp[t.id]
        body = SubmitIn(
            idempotency_key=f"k{n}",
            pairwise={"a": a, "b": b, "choice": "a", "strength": "slightly_better"},
            edit={"response_id": b, "text": f"fixed {n}"},
        )
        submit_judgment(store, task_ids, t.id, body, user)
    store.dispose()
    out_file = tmp_path / "prefs.jsonl"
    cli.main(
        ["export", "--db", db, "--campaign", "1", "--kind", "pairwise", "--output", str(out_file)],
        command="campaign",
    )
    assert f"wrote {len(tasks)} pairwise records" in capsys.readouterr().out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert all(r["margin"] == 1.0 and r["chosen"].endswith((" a", "one")) for r in rows)
    models = {r["meta"]["chosen_model"] for r in rows}
    assert models <= {"ckpt-1", None}  # the producing checkpoint is kept
    demo_file = tmp_path / "demos.jsonl"
    cli.main(
        ["export", "--db", db, "--campaign", "1", "--kind", "demonstration", "--output", str(demo_file)],
        command="campaign",
    )
    io = pytest.importorskip("prefloop.data.io")
    demos = io.read_records(demo_file, kind="demonstration")
    assert sorted(d.response for d in demos) == sorted(f"fixed {n}" for n in range(len(tasks)))
    assert len(io.read_records(out_file, kind="pairwise")) == len(tasks)

    cli.main(["token", "--db", db, "--name", "ann1"], command="campaign")
    fresh = capsys.readouterr().out.strip().split("\t")[1]
    store = Store(db)
    with store.read() as s:
        assert user_for_token(s, fresh).name == "ann1" and user_for_token(s, tokens["ann1"]).name == "ann1"
    store.dispose()
    with pytest.raises(SystemExit, match="not found"):
        cli.main(["token", "--db", db, "--name", "nobody"], command="campaign")

    cli.main(["list", "--db", db], command="campaign")
    listing = capsys.readouterr().out
    assert "demo" in listing and "items=5" in listing and f"judgments={len(tasks)}" in listing


@pytest.mark.parametrize(
    "rows, needle",
    [
        ([{"prompt": "p", "responses": ["a"]}, {"prompt": "p"}], ":2: field 'responses': missing"),
        ([{"prompt": "p", "responses": [{"txt": "a"}]}], ":1: field 'responses[0]'"),
        ([{"prompt": "p", "responses": ["a", "b"], "gold": {"chosen": 5}}], ":1: "),
        ([{"prompt": 3, "responses": ["a"]}], ":1: field 'prompt"),
    ],
)
def test_bad_items_file_names_file_line_and_field(tmp_path: Path, rows: list, needle: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["create", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--items", str(path)], command="campaign"
        )
    assert f"bad.jsonl{needle}" in str(exc.value)


def test_unknown_subcommand_and_help(capsys: pytest.CaptureFixture) -> None:
    cli.main([], command="campaign")
    assert "add-annotators" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"], command="campaign")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"], command="serve")
    assert exc.value.code == 0
    assert "--admin-password" in capsys.readouterr().out


def test_items_from_several_files_merge_by_prompt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two `prefloop generate` runs (two models) become one item per prompt holding both models' responses."""
    a = _write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt": p, "responses": [{"text": f"{p} a{j}", "model": "m-a"} for j in range(2)]}
            for p in ("p1", "p2")
        ],
    )
    b = _write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"prompt": "p2", "responses": [{"text": "p2 b0", "model": "m-b"}]},
            {
                "prompt": "p3",
                "responses": [{"text": "p3 b0", "model": "m-b"}, {"text": "p3 b1", "model": "m-b"}],
            },
            {
                "prompt": "p1",
                "responses": ["a b", "c d"],
                "gold": {"chosen": 0},
            },  # gold: kept as its own item
        ],
    )
    items = cli.read_item_files([a, b])
    assert [(i["prompt"], [r["text"] for r in i["responses"]]) for i in items] == [
        ("p1", ["p1 a0", "p1 a1"]),
        ("p2", ["p2 a0", "p2 a1", "p2 b0"]),
        ("p3", ["p3 b0", "p3 b1"]),
        ("p1", ["a b", "c d"]),
    ]
    assert [r["model"] for r in items[1]["responses"]] == ["m-a", "m-a", "m-b"]
    db = f"sqlite:///{tmp_path / 'm.db'}"
    cli.main(["create", "--db", db, "--items", str(a), str(b)], command="campaign")
    assert "with 4 items" in capsys.readouterr().out


def test_identical_texts_of_two_models_export_to_readable_records(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two models writing the same answer: exports stay readable by `read_records` (the training readers)."""
    from prefloop.data.io import read_records
    from prefloop.feedback.export import export_records

    a = _write_jsonl(
        tmp_path / "a.jsonl",
        [{"prompt": "p", "responses": [{"text": "same", "model": "m-a"}, {"text": "worst", "model": "m-a"}]}],
    )
    b = _write_jsonl(
        tmp_path / "b.jsonl",
        [{"prompt": "p", "responses": [{"text": "same", "model": "m-b"}, {"text": "good", "model": "m-b"}]}],
    )
    db = f"sqlite:///{tmp_path / 'd.db'}"
    cli.main(
        [
            "create",
            "--db",
            db,
            "--items",
            str(a),
            str(b),
            "--feedback-types",
            "ranking",
            "pairwise",
            "--annotators",
            "ann",
        ],
        command="campaign",
    )
    token = _tokens(capsys.readouterr().out)["ann"]
    store = Store(db)
    with store.read() as s:
        user = user_for_token(s, token)
        task = s.scalars(select(Assignment).where(Assignment.user_id == user.id)).one()
        ids = [
            r.id
            for r in s.scalars(
                select(Response).where(Response.item_id == task.item_id).order_by(Response.position)
            )
        ]  # same(m-a), worst, same(m-b), good
    # The copies ranked apart (0 and 2) and compared against each other. Annotators see copies
    # once today, but databases from before hold such judgments: write one directly.
    payload = {
        "ranking": [[ids[0]], [ids[3]], [ids[2]], [ids[1]]],
        "pairwise": {"a": ids[0], "b": ids[2], "choice": "a", "strength": "better"},
    }
    with store.write() as s:
        s.add(
            Judgment(
                assignment_id=task.id,
                campaign_id=1,
                item_id=task.item_id,
                user_id=user.id,
                idempotency_key="k",
                payload=payload,
                undone=False,
                created_at=utcnow(),
            )
        )
    with store.read() as s:
        ranked = export_records(s, 1, "ranked", "raw")
        pairs = export_records(s, 1, "pairwise", "raw")
        cons = export_records(s, 1, "pairwise", "consensus")
    store.dispose()
    assert pairs == []  # 'same' over 'same' teaches nothing
    (r,) = ranked
    assert r.responses == ["same", "worst", "good"] and r.ranks == [0, 2, 1]  # best rank of the copies, dense
    assert r.meta["models"] == ["m-a+m-b", "m-a", "m-b"] and r.meta["merged_copies"] == 1
    # the ranking's pairs by response, less 'same' over 'same'
    assert sorted((p.chosen, p.rejected) for p in cons) == sorted(
        [("same", "good"), ("same", "worst"), ("good", "same"), ("good", "worst"), ("same", "worst")]
    )
    for kind, records in [("ranked", ranked), ("pairwise", cons)]:
        out = tmp_path / f"{kind}.jsonl"
        cli.main(
            [
                "export",
                "--db",
                db,
                "--campaign",
                "1",
                "--kind",
                kind,
                "--mode",
                "raw" if kind == "ranked" else "consensus",
                "--output",
                str(out),
            ],
            command="campaign",
        )
        assert len(read_records(out)) == len(records)


def test_server_process_freezes_start_up_objects_and_collects_rarely(tmp_path: Path) -> None:
    """`serve --workers N` builds each worker's app with `app_from_env`: the worker's garbage
    collector must leave the start-up objects alone and run with the raised thresholds (full
    collections over them were most of the submit p99 under load). Run in a child process, so
    this test's own interpreter keeps CPython's defaults."""
    db = f"sqlite:///{tmp_path / 'gc.db'}"
    upgrade(db)
    code = (
        "import gc, json; from prefloop.feedback import cli; "
        "before = (gc.get_freeze_count(), gc.get_threshold()); cli.app_from_env(); "
        "print(json.dumps([before, [gc.get_freeze_count(), gc.get_threshold()]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, cli.DB_ENV: db},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (frozen_before, thresholds_before), (frozen_after, thresholds_after) = json.loads(out)
    assert frozen_before == 0 and tuple(thresholds_before) != cli.GC_THRESHOLDS
    assert frozen_after > 10_000  # the app's modules, routes and mappers
    assert tuple(thresholds_after) == cli.GC_THRESHOLDS
