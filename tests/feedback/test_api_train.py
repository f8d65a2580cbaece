"""Exports feed the training commands directly: reward model and DPO on a campaign's export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _annotate(server: Any, cid: int, token: str, name: str) -> int:
    n = 0
    while (task := server.api("GET", f"/api/campaigns/{cid}/next", token).json()["task"]) is not None:
        ids = [r["id"] for r in sorted(task["responses"], key=lambda r: r["text"])]  # answer 0 < 1 < 2
        body = {
            "idempotency_key": f"{name}-{task['task_id']}",
            "ranking": [[i] for i in ids],
            "pairwise": {"a": ids[0], "b": ids[2], "choice": "a", "strength": "better"},
            "thumbs": {str(ids[0]): True, str(ids[2]): False},
        }
        assert server.api("POST", f"/api/tasks/{task['task_id']}/submit", token, json=body).status_code == 200
        n += 1
    return n


@pytest.mark.slow
def test_reward_and_dpo_train_on_the_export(live_server: Any, tmp_path: Path) -> None:
    reward_model = pytest.importorskip("prefloop.train.reward_model")
    preference = pytest.importorskip("prefloop.train.preference")
    camp = live_server.create_campaign(annotators=["t_alice", "t_bob"], n_items=4, k=3, overlap=2)
    for name in ("t_alice", "t_bob"):
        assert _annotate(live_server, camp.id, camp.tokens[name], name) == 4
    admin = live_server.admin()
    paths = {}
    for kind, mode in [("pairwise", "raw"), ("ranked", "consensus"), ("binary", "raw")]:
        r = admin.get(f"/api/campaigns/{camp.id}/export", params={"kind": kind, "mode": mode})
        assert r.status_code == 200 and r.text.strip()
        paths[kind] = tmp_path / f"{kind}.jsonl"
        paths[kind].write_text(r.text)

    common = {
        "model": "tiny",
        "max_steps": 2,
        "batch_size": 2,
        "max_length": 64,
        "max_prompt_length": 32,
        "save_steps": 1000,
    }
    out = reward_model.train(
        reward_model.RewardConfig(data=str(paths["pairwise"]), output_dir=str(tmp_path / "rm"), **common)
    )
    assert Path(out).exists()
    reward_model.train(
        reward_model.RewardConfig(data=str(paths["ranked"]), output_dir=str(tmp_path / "rm2"), **common)
    )
    out = preference.train(
        preference.PreferenceConfig(
            data=str(paths["pairwise"]), output_dir=str(tmp_path / "dpo"), loss="dpo", **common
        )
    )
    assert Path(out).exists()
    preference.train(
        preference.PreferenceConfig(
            data=str(paths["binary"]), output_dir=str(tmp_path / "kto"), loss="kto", **common
        )
    )
