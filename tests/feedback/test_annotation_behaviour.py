"""Annotation behaviour against a real server: skipped items reach their overlap through another
annotator, and critiques export as SFT data the training readers accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefloop.data.io import read_records
from prefloop.data.records import Demonstration
from prefloop.feedback import cli

ServerProcess = Any


def _next(server: ServerProcess, token: str, cid: int) -> dict[str, Any] | None:
    r = server.api("GET", f"/api/campaigns/{cid}/next", token)
    assert r.status_code == 200, r.text
    return r.json()["task"]


def test_skipped_items_go_to_another_annotator(live_server: ServerProcess) -> None:
    # 2 items, overlap 2, three annotators: each item starts with 2 of them. Before, a skip left
    # the item with 1 judgment of 2 for good.
    camp = live_server.create_campaign(annotators=["sk_a", "sk_b", "sk_c"], n_items=2, k=2, overlap=2)
    toks = camp.tokens
    holders = {
        name: {t["item_id"] for t in _all_tasks(live_server, tok, camp.id)} for name, tok in toks.items()
    }
    assert sorted(len(v) for v in holders.values()) == [1, 1, 2]
    skipper = next(n for n, items in holders.items() if len(items) == 2)
    task = _next(live_server, toks[skipper], camp.id)
    item = task["item_id"]
    (spare,) = [n for n, items in holders.items() if item not in items]
    r = live_server.api("POST", f"/api/tasks/{task['task_id']}/skip", toks[skipper])
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    # the annotator who did not have the item gets it now
    assert item in {t["item_id"] for t in _all_tasks(live_server, toks[spare], camp.id)}
    # everyone answers everything they hold: every item ends with 2 judgments
    for tok in toks.values():
        while (t := _next(live_server, tok, camp.id)) is not None:
            ids = [r["id"] for r in t["responses"]]
            body = {"idempotency_key": f"k{t['task_id']}", "ranking": [[i] for i in ids]}
            assert (
                live_server.api("POST", f"/api/tasks/{t['task_id']}/submit", tok, json=body).status_code
                == 200
            )
    stored = live_server.api("GET", f"/api/campaigns/{camp.id}/judgments", live_server.admin_token).json()
    per_item = {i: sum(j["item_id"] == i for j in stored) for i in camp.item_ids}
    assert per_item == {i: 2 for i in camp.item_ids}
    # skipping when nobody is left: no task is created, nothing fails
    last = _next(live_server, toks[skipper], camp.id)
    assert last is None


def _all_tasks(server: ServerProcess, token: str, cid: int) -> list[dict[str, Any]]:
    """The caller's pending tasks, read without changing anything (the campaign's task ids)."""
    out = []
    for task_id in range(1, 50):
        r = server.api("GET", f"/api/tasks/{task_id}", token)
        if r.status_code == 200 and r.json()["campaign_id"] == cid and r.json()["status"] == "pending":
            out.append(r.json())
    return out


def test_critique_export_api_and_cli(live_server: ServerProcess, tmp_path: Path) -> None:
    items = [
        {
            "prompt": "What is 2 + 2?",
            "responses": [{"text": "4", "model": "good"}, {"text": "5", "model": "bad"}],
        },
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a color."},
            ],
            "responses": [{"text": "Blue.", "model": "good"}, {"text": "Seven.", "model": "bad"}],
        },
    ]
    camp = live_server.create_campaign(annotators=["cr_ann"], items=items, anonymous=False)
    tok = camp.tokens["cr_ann"]
    t1 = _next(live_server, tok, camp.id)
    good, bad = (r["id"] for r in t1["responses"])
    body = {
        "idempotency_key": "c1",
        "pairwise": {"a": bad, "b": good, "choice": "b"},
        "critique": "Correct and short.",
    }
    assert live_server.api("POST", f"/api/tasks/{t1['task_id']}/submit", tok, json=body).status_code == 200
    t2 = _next(live_server, tok, camp.id)
    _blue, seven = (r["id"] for r in t2["responses"])
    body = {
        "idempotency_key": "c2",
        "edit": {"response_id": seven, "text": "Red."},
        "critique": "Not a color.",
    }
    assert live_server.api("POST", f"/api/tasks/{t2['task_id']}/submit", tok, json=body).status_code == 200

    r = live_server.api("GET", f"/api/campaigns/{camp.id}/export?kind=critique", live_server.admin_token)
    assert r.status_code == 200
    out = tmp_path / "critiques.jsonl"
    out.write_text(r.text)
    records = read_records(out, kind="demonstration")  # what `prefloop sft --data` reads
    assert all(isinstance(rec, Demonstration) for rec in records) and len(records) == 2
    first, second = records
    assert first.prompt == [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Critique the answer above: what is wrong or missing, and what is good?"},
    ]
    assert first.response == "Correct and short."
    assert first.meta["annotator"] == "cr_ann" and first.meta["critique_of"] == "chosen"
    assert first.meta["critiqued_response"] == "4" and first.meta["model"] == "good"
    assert first.meta["prompt"] == "What is 2 + 2?"
    # a chat prompt keeps its messages; the critique is about the edited response
    assert [m["role"] for m in second.prompt] == ["system", "user", "assistant", "user"]
    assert second.prompt[2]["content"] == "Seven." and second.meta["critique_of"] == "edited"
    assert second.response == "Not a color."

    # the CLI writes the same file
    cli_out = tmp_path / "cli.jsonl"
    db = live_server.db_url
    cli.main(
        ["export", "--db", db, "--campaign", str(camp.id), "--kind", "critique", "--output", str(cli_out)],
        command="campaign",
    )
    assert cli_out.read_text() == r.text
