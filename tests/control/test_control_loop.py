"""`prefloop control` end to end on tiny budgets: the predictor learns, every teacher runs, bad input fails."""

import json
import math

import numpy as np
import pytest
import torch

from prefloop.control.agent import load_agent
from prefloop.control.loop import ControlConfig, main, train
from prefloop.control.reward_model import load_reward_model

TINY = dict(num_envs=2, rollout_steps=64, eval_episodes=1, eval_pairs=100)


def run(tmp_path, name: str, **fields) -> dict:
    cfg = ControlConfig(output_dir=str(tmp_path / name), **{**TINY, **fields})
    out = train(cfg)
    return json.loads((out / "summary.json").read_text())


def test_tiny_budget_reward_predictor_agrees_with_true_preferences(tmp_path):
    # 2,048 CartPole steps, 60 oracle labels: on held-out episodes' segment pairs with different true
    # returns, the predictor orders 0.76–0.86 of them like the true reward (seeds 0–4; chance 0.5).
    summary = run(tmp_path, "cartpole", labels=60, total_steps=2048, rollout_steps=128, eval_pairs=300)
    assert summary["labels_used"] == 60 and summary["labels_answered"] == 60
    assert summary["heldout_agreement"] > 0.7
    assert summary["heldout_episodes_queried"] == 0  # queries never touch held-out episodes
    out = tmp_path / "cartpole"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == list(range(256, 2049, 256))
    assert rows[0]["labels_used"] == 20  # a quarter of 60 (15), rounded up to whole batches of 10
    assert rows[-1]["labels_used"] == 60
    assert all(not math.isnan(r["reward/heldout_agreement"]) for r in rows)
    assert (out / "returns.png").stat().st_size > 1000
    agent = load_agent(out / "agent")
    actions, _ = agent.act(torch.zeros(3, 4), deterministic=True)
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}
    ensemble = load_reward_model(out / "reward_model")
    assert ensemble.predict(np.zeros((5, 4)), np.zeros((5, 1))).shape == (3, 5)


@pytest.mark.parametrize("teacher", ["oracle", "stoc", "mistake", "skip", "equal", "myopic"])
def test_every_teacher_runs_the_loop(tmp_path, teacher):
    summary = run(tmp_path, teacher, teacher=teacher, labels=20, total_steps=256)
    assert summary["labels_used"] == 20
    assert 0 <= summary["labels_answered"] <= 20
    assert summary["heldout_episodes_queried"] == 0
    assert math.isfinite(summary["eval_return_mean"])


def test_continuous_actions_true_reward_and_odd_budgets(tmp_path):
    # Pendulum: a Gaussian policy; the uniform selector; segments longer than any buffer piece.
    summary = run(
        tmp_path,
        "pendulum",
        env="Pendulum-v1",
        labels=10,
        total_steps=256,
        segment_length=300,
        query_selection="uniform",
    )
    assert summary["labels_used"] == 10 and summary["eval_returns"][0] < 0
    agent = load_agent(tmp_path / "pendulum" / "agent")
    action, _ = agent.act(torch.zeros(1, 3))
    assert action.shape == (1, 1)
    # the true-reward baseline writes no reward model and asks nothing
    base = run(tmp_path, "true", reward="true", total_steps=256)
    assert base["labels_used"] == 0 and not (tmp_path / "true" / "reward_model").exists()
    # a budget of exactly one batch, total steps not a multiple of an iteration (rounded up)
    odd = run(tmp_path, "odd", labels=10, total_steps=130)
    assert odd["labels_used"] == 10 and odd["env_steps"] == 256
    # a single iteration still asks the whole budget (after its only rollout)
    one = run(tmp_path, "one", labels=25, total_steps=64, rollout_steps=32)
    assert one["labels_used"] == 25 and one["env_steps"] == 64


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "NoSuchEnv-v0"], "not a registered gymnasium environment"),
        (["--labels", "5", "--query-batch", "10"], "--labels 5 is smaller than one query batch"),
        (["--labels", "0"], "smaller than one query batch"),
        (["--total-steps", "0"], "--total-steps must be >= 1"),
        (["--ensemble-size", "1"], "disagreement needs --ensemble-size >= 2"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--output-dir", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_mujoco_runs_with_observation_normalisation_and_terminations(tmp_path):
    pytest.importorskip("mujoco")
    # Hopper terminates when it falls: a random policy's segments end in the absorbing state.
    summary = run(
        tmp_path, "hopper", env="Hopper-v5", labels=20, total_steps=512, segment_length=50, obs_norm=True
    )
    assert summary["labels_used"] == 20 and math.isfinite(summary["eval_return_mean"])
    agent = load_agent(tmp_path / "hopper" / "agent")
    assert agent.obs_count.item() == 512 and agent.obs_var.min().item() > 0  # statistics saved
    rows = [json.loads(line) for line in (tmp_path / "hopper" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["reward/predicted_absorbing"]) for r in rows)


def test_mujoco_without_the_package_says_what_to_install(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mujoco", None)  # as if it were not installed: import fails
    with pytest.raises(SystemExit):
        main(["--env", "Hopper-v5", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert "pip install 'gymnasium[mujoco]'" in err and len(err.splitlines()) == 1
