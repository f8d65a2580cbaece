"""`prefloop eval` on tiny models with a judge whose answer is known (tests/eval/toy_judge.py)."""

import json
import math
from pathlib import Path

import pytest

from prefloop.cli import main
from prefloop.eval.cli import expected_best_of_n

JUDGE = f"{Path(__file__).with_name('toy_judge.py')}:target_share"
FAST = ["--num-prompts", "6", "--max-new-tokens", "8", "--data", "task:positive_replies"]


@pytest.fixture(scope="module")
def yes_policy(tmp_path_factory):
    """A tiny model fine-tuned to answer 'yes yes yes': trained toward the toy judge's reward."""
    tmp = tmp_path_factory.mktemp("yes")
    data = tmp / "demos.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "response": "yes yes yes yes"}) + "\n" for i in range(16)
        )
    )
    out = tmp / "run"
    main(
        [
            "sft",
            "--model",
            "tiny",
            "--data",
            str(data),
            "--output-dir",
            str(out),
            "--max-steps",
            "12",
            "--batch-size",
            "8",
            "--learning-rate",
            "3e-2",
            "--lr-scheduler",
            "constant",
            "--save-steps",
            "6",
            "--save-total-limit",
            "0",
        ]
    )
    return out


def test_expected_best_of_n_by_hand():
    # proxy order ascending: idx 2 (0.1), 0 (0.5), 1 (0.9); best of a random 2-subset is the
    # 2nd with prob C(1,1)/C(3,2) = 1/3 and the 3rd with prob C(2,1)/3 = 2/3.
    gold = [10.0, 20.0, 30.0]
    assert expected_best_of_n([0.5, 0.9, 0.1], gold, 2) == pytest.approx(10.0 / 3 + 20.0 * 2 / 3)
    assert expected_best_of_n([0.5, 0.9, 0.1], gold, 1) == pytest.approx(20.0)  # the plain mean
    assert expected_best_of_n([0.5, 0.9, 0.1], gold, 3) == pytest.approx(20.0)  # always the proxy-best


def test_winrate_of_a_model_against_itself_is_one_half(tmp_path, capsys):
    main(
        [
            "eval",
            "winrate",
            "--policy",
            "tiny",
            "--reference",
            "tiny",
            "--judge",
            JUDGE,
            "--num-samples",
            "2",
            "--output-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    result = json.loads((tmp_path / "winrate.json").read_text())
    # Same model, same seed: the same samples, every pair a tie.
    assert result["win_rate"] == 0.5 and result["tie_rate"] == 1.0 and result["n"] == 12
    assert result["ci_low"] <= 0.5 <= result["ci_high"]
    assert len((tmp_path / "winrate_samples.jsonl").read_text().splitlines()) == 12


def test_a_policy_trained_toward_the_reward_wins(yes_policy):
    main(
        [
            "eval",
            "winrate",
            "--policy",
            str(yes_policy),
            "--reference",
            "tiny",
            "--judge",
            JUDGE,
            "--num-samples",
            "2",
            *FAST,
        ]
    )
    result = json.loads((yes_policy / "eval" / "winrate.json").read_text())  # results go under the run
    assert result["win_rate"] > 0.8 and result["ci_low"] > 0.5
    assert 0.0 <= result["length_controlled_win_rate"] <= 1.0
    assert "Evaluation: eval/winrate.json" in (yes_policy / "report.html").read_text()  # report refreshed


def test_leaderboard_ranks_the_trained_checkpoints_above_the_start(yes_policy, tmp_path):
    main(
        [
            "eval",
            "leaderboard",
            "--models",
            "tiny",
            str(yes_policy),
            "--judge",
            JUDGE,
            "--n-bootstrap",
            "50",
            "--output-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    ranked = [row["model"] for row in board["bradley_terry"]]
    assert set(ranked) == {"tiny", "run@6", "run"}  # each checkpoint (the last step is final/) and final/
    assert ranked[-1] == "tiny"  # the untrained start says 'yes' least
    assert (tmp_path / "leaderboard.png").stat().st_size > 0


def test_frontier_places_checkpoints_and_best_of_n(yes_policy, tmp_path):
    main(
        [
            "eval",
            "frontier",
            "--runs",
            str(yes_policy),
            "--reference",
            "tiny",
            "--judge",
            JUDGE,
            "--best-of-n",
            "1",
            "4",
            "--proxy",
            JUDGE,
            "--num-samples",
            "2",
            "--output-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    points = {p["label"]: p for p in json.loads((tmp_path / "frontier.json").read_text())["points"]}
    assert set(points) == {"run@6", "run", "best-of-1", "best-of-4"}
    assert points["best-of-1"]["kl"] == 0.0 and points["best-of-4"]["kl"] == pytest.approx(math.log(4) - 0.75)
    assert points["run"]["kl"] > 0.1 and points["run"]["score"] > points["best-of-1"]["score"]
    assert (tmp_path / "frontier.png").stat().st_size > 0


def test_unknown_judge_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "eval",
                "winrate",
                "--policy",
                "tiny",
                "--judge",
                "nonsense-judge",
                "--output-dir",
                str(tmp_path),
                *FAST,
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "accepted" in err and len(err.strip().splitlines()) == 1


def test_overoptimization_best_of_n_curve_and_fit(tmp_path):
    gold = f"{Path(__file__).with_name('toy_judge.py')}:short"
    main(
        [
            "eval",
            "overoptimization",
            "--policy",
            "tiny",
            "--proxy",
            JUDGE,
            "--judge",
            gold,
            "--max-n",
            "8",
            "--output-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    result = json.loads((tmp_path / "overoptimization.json").read_text())
    assert [r["n"] for r in result["best_of_n"]] == [1, 2, 4, 8]
    assert [r["kl"] for r in result["best_of_n"]] == pytest.approx(
        [0.0, math.log(2) - 0.5, math.log(4) - 0.75, math.log(8) - 7 / 8]
    )
    proxy = [r["proxy"] for r in result["best_of_n"]]
    assert proxy == sorted(proxy)  # picking by the proxy can only raise the proxy's expected score
    assert set(result["fit_best_of_n"]) == {"gold", "proxy"}
    assert (tmp_path / "overoptimization.png").stat().st_size > 0


def test_overoptimization_places_a_runs_checkpoints_with_measured_kl(yes_policy, tmp_path):
    main(
        [
            "eval",
            "overoptimization",
            "--policy",
            "tiny",
            "--proxy",
            JUDGE,
            "--judge",
            JUDGE,
            "--max-n",
            "2",
            "--runs",
            str(yes_policy),
            "--num-samples",
            "2",
            "--output-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    result = json.loads((tmp_path / "overoptimization.json").read_text())
    rl = {r["label"]: r for r in result["rl"]}
    assert set(rl) == {"run@6", "run"}
    for r in rl.values():  # judge and proxy are the same toy reward here
        assert r["gold"] == pytest.approx(r["proxy"]) and r["d"] == pytest.approx(math.sqrt(r["kl"]))
    assert rl["run"]["kl"] > 0.1 and rl["run"]["gold"] > result["best_of_n"][0]["gold"]
    assert set(result["fit_rl"]["gold"]) >= {"alpha", "beta", "d_peak", "gold_peak", "peak_in_range"}
    assert set(result["gold_peak"]) == {"best-of-n", "rl"} and all(result["gold_peak"].values())


def test_winrate_with_an_ai_judge_asks_both_orders(tmp_path):
    main(
        [
            "eval",
            "winrate",
            "--policy",
            "tiny",
            "--reference",
            "tiny",
            "--judge",
            "ai:tiny",
            "--output-dir",
            str(tmp_path),
            "--num-prompts",
            "3",
            "--max-new-tokens",
            "6",
            "--data",
            "task:positive_replies",
        ]
    )
    result = json.loads((tmp_path / "winrate.json").read_text())
    # Identical samples: a judge asked in both orders cannot prefer one side systematically.
    assert result["judge"].startswith("ai:") and result["n"] + result["abstained"] == 3
    assert result["win_rate"] == pytest.approx(0.5)


def test_a_runs_final_given_alone_is_named_after_its_run(tmp_path):
    from prefloop.eval.cli import _method_of
    from prefloop.eval.sampling import run_models

    run = tmp_path / "dpo-b0.1"
    (run / "final").mkdir(parents=True)
    (run / "config.yaml").write_text("loss: dpo\nmodel: tiny\n")
    plain = tmp_path / "some-model"
    plain.mkdir()
    assert run_models(run / "final") == [("dpo-b0.1", run / "final", None)]
    assert _method_of(str(run / "final")) == "dpo"
    assert run_models(plain) == [("some-model", plain, None)]
    assert _method_of(str(plain)) == "model"
