"""The pure parts of benchmarks/control_imitation.py: imitation's iteration split, the one
normalisation, a table row with crashed runs. (No test builds imitation's virtualenv or runs it.)"""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from control_imitation import imitation_schedule, render, summarise
from control_labels import normalised_score


def test_imitation_trains_prefloops_env_steps_in_whole_rollouts():
    # imitation trains after each of its n + 1 rounds (the initial one too); a round must be whole rollouts.
    # Pendulum: 200,000 steps in rollouts of 4 × 1024 = 4,096 → ceil = 49 rollouts = 200,704 steps (what
    # prefloop trains); 49's divisors in 2..61 are 7 and 49 → 49 rounds of one rollout, n = 48.
    assert imitation_schedule(200_000, 4096) == (48, 200_704)
    # CartPole: 50,000 in rollouts of 8 × 32 = 256 → 196 = 2²·7² rollouts = 50,176 steps (prefloop's
    # 98 × 512); divisors in 2..61: …, 28, 49 → 49 rounds of 4 rollouts, n = 48.
    assert imitation_schedule(50_000, 256) == (48, 50_176)
    # 61 rollouts (prime): 61 rounds of one, n = 60 (the cap, imitation's documented 60 iterations).
    assert imitation_schedule(61 * 100, 100) == (60, 6100)
    # fewer rollouts than the cap: one rollout per round.
    assert imitation_schedule(1000, 256) == (3, 1024)
    # 67 rollouts (a prime above 61) or a single rollout: no even split into at least two rounds.
    with pytest.raises(ValueError, match="cannot be split"):
        imitation_schedule(67 * 100, 100)
    with pytest.raises(ValueError, match="cannot be split"):
        imitation_schedule(100, 256)


def test_normalised_score_random_is_zero_true_reward_is_one():
    # R_random = 20, R_true = 420: (220 − 20) / 400 = 0.5; 20 → 0; 420 → 1; 0 → −0.05.
    assert normalised_score([220.0, 20.0, 420.0, 0.0], 20.0, 420.0).tolist() == [0.5, 0.0, 1.0, -0.05]
    # Pendulum's returns are negative: R_random = −1200, R_true = −150 → −675 is halfway.
    assert normalised_score([-675.0], -1200.0, -150.0).tolist() == [0.5]
    assert math.isnan(normalised_score([5.0], 3.0, 3.0)[0])


def test_a_row_counts_crashes_and_averages_the_runs_that_finished():
    error = "ValueError: No trajectories are long enough for the desired fragment length of 25."
    runs = [
        {"eval_return_mean": 120.0, "env_steps": 50176, "wall_s": 30.0, "cpu_s": 28.0, "error": None},
        {"error": error, "wall_s": 4.0, "cpu_s": 3.0},
        {"eval_return_mean": 320.0, "env_steps": 50176, "wall_s": 50.0, "cpu_s": 44.0, "error": None},
    ]
    row = summarise("imitation 1.0.1, 100 labels", runs, r_random=20.0, r_true=420.0)
    # finished returns 120, 320: mean 220, population std 100; scores 0.25, 0.75 → 0.5 ± 0.25
    assert row["seeds"] == 3 and row["crashed"] == 1 and row["errors"] == [error]
    assert row["return_mean"] == 220.0 and row["return_std"] == 100.0
    assert row["score_mean"] == pytest.approx(0.5) and row["score_std"] == pytest.approx(0.25)
    assert row["per_seed"] == [120.0, None, 320.0]
    assert row["env_steps"] == [50176]
    assert row["wall_s_mean"] == 28.0 and row["cpu_s_mean"] == 25.0  # (30+4+50)/3, (28+3+44)/3

    every_seed_crashed = summarise("imitation 1.0.1, 30 labels", runs[1:2] * 3, 20.0, 420.0)
    assert every_seed_crashed["crashed"] == 3 and every_seed_crashed["return_mean"] is None
    text = render({"header": "CartPole-v1", "rows": [row, every_seed_crashed]})
    assert "| imitation 1.0.1, 100 labels | 2 / 3 | 220.0 ± 100.0 | 0.50 ± 0.25 | 120 / crash / 320 |" in text
    assert "| imitation 1.0.1, 30 labels | 0 / 3 | — | — | crash / crash / crash |" in text
    assert text.endswith(f"imitation's error: `{error}`")
