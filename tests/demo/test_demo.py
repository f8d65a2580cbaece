"""`prefloop demo` end to end: the tiny random model with tiny sizes (fast), the real one (slow)."""

import json
import math
import time

import pytest

from prefloop.data.records import RankedResponses
from prefloop.demo import DemoConfig, _pairs_for_dpo, _rm_accuracy_vs_gold, run

TINY = dict(
    model="tiny",
    reward_model="tiny",
    num_train_prompts=3,
    num_eval_prompts=2,
    k=3,
    max_new_tokens=4,
    eval_samples=2,
    dpo_epochs=1,
    dpo_batch_size=2,
    reward_epochs=1,
    reward_batch_size=2,
    num_shown_samples=2,
)

SUMMARY_KEYS = {
    "task",
    "num_train_prompts",
    "num_eval_prompts",
    "gold",
    "kl_to_start",
    "reward_model",
    "annotator",
    "dpo",
    "timings_s",
    "config",
}


def test_demo_runs_end_to_end_on_the_tiny_model(tmp_path):
    start = time.perf_counter()
    summary = run(DemoConfig(output_dir=str(tmp_path), **TINY))
    # ~20 s on an idle 2-core machine; the bound leaves room for a machine shared with other jobs.
    assert time.perf_counter() - start < 120
    for name in (
        "report.md",
        "report.html",
        "report.png",
        "summary.json",
        "samples.jsonl",
        "preferences.jsonl",
        "config.yaml",
        "dpo/final/config.json",
        "dpo/metrics.jsonl",
        "reward_model/final/config.json",
    ):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved) >= SUMMARY_KEYS and set(summary) >= SUMMARY_KEYS
    assert set(saved["gold"]) >= {"before", "after", "win_rate", "improvement"}
    assert set(saved["timings_s"]) >= {
        "load",
        "before",
        "sample",
        "annotate",
        "reward",
        "dpo",
        "after",
        "eval",
        "report",
        "total",
    }
    assert saved["dpo"]["num_records"] >= 1
    # Training records carry no gold scores: only prompt, responses and the annotator's ranks.
    rankings = [json.loads(x) for x in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    for row in rankings:
        assert set(row) == {"prompt", "responses", "ranks"}
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2

    # The split: 3 training and 2 held-out prompts, disjoint.
    train_prompts = {r["prompt"] for r in rankings}
    eval_prompts = {r["prompt"] for r in samples}
    assert len(train_prompts) == 3 and len(eval_prompts) == 2
    assert not train_prompts & eval_prompts

    # The numbers are finite, in range, and those of the samples.
    g = saved["gold"]
    gold_before = [r["gold_before"] for r in samples]
    gold_after = [r["gold_after"] for r in samples]
    assert all(-1.5 <= x <= 1.0 for x in gold_before + gold_after)  # VADER in [-1, 1] minus penalties
    assert g["before"] == pytest.approx(sum(gold_before) / 4) and g["after"] == pytest.approx(
        sum(gold_after) / 4
    )
    assert g["improvement"] == pytest.approx(g["after"] - g["before"])
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(gold_after, gold_before))
    assert g["win_rate"] == pytest.approx(wins / 4)
    assert math.isfinite(saved["kl_to_start"]) and saved["kl_to_start_stderr"] >= 0
    assert 0.0 <= saved["after_capped_share"] <= 1.0
    assert (
        0.0 <= saved["annotator"]["agreement"] <= 1.0
        and 0.0 <= saved["annotator"]["expected_agreement"] <= 1.0
    )
    accuracy = saved["reward_model"]["heldout_accuracy_vs_gold"]
    assert accuracy is None or 0.0 <= accuracy <= 1.0  # None: no gold-ordered pair to count
    assert math.isfinite(saved["dpo"]["final_loss"]) and saved["dpo"]["final_loss"] >= 0

    # The report shows these figures under the right names.
    md = (tmp_path / "report.md").read_text()
    assert f"| gold score before (start model) | {g['before']:.3f} ± {g['before_stderr']:.3f} |" in md
    assert f"| gold score after DPO | {g['after']:.3f} ± {g['after_stderr']:.3f} |" in md
    assert f"| win rate of after over before (gold, per sample pair) | {g['win_rate']:.3f} |" in md
    kl_row = (
        f"| KL(π_after ‖ π_start) per response, nats | {saved['kl_to_start']:.3f} ± "
        f"{saved['kl_to_start_stderr']:.3f} ({saved['after_capped_share']:.0%} of replies cut at max_new_tokens) |"
    )
    assert kl_row in md
    agreement = saved["annotator"]
    assert f"| {agreement['agreement']:.3f} / {agreement['expected_agreement']:.3f} |" in md


def test_cli_rejects_bad_settings(capsys):
    from prefloop.demo import main

    with pytest.raises(SystemExit) as exc:
        main(["--model", "tiny", "--k", "1"], command="demo")
    assert exc.value.code == 2
    assert "k must be at least 2" in capsys.readouterr().err


def test_pairs_from_rankings():
    r = RankedResponses("p", ["x", "y", "z"], [1, 0, 2])
    (pair,) = _pairs_for_dpo([r], "best_worst")
    assert (pair.chosen, pair.rejected) == ("y", "z")
    assert len(_pairs_for_dpo([r], "all")) == 3
    assert _pairs_for_dpo([RankedResponses("p", ["x", "y"], [0, 0])], "best_worst") == []


def test_rm_accuracy_vs_gold_by_hand():
    # two prompts x 3 samples; prompt 1: all 3 pairs right; prompt 2: gold tie skipped, 1 of 2 right
    gold = [0.9, 0.5, 0.1, 0.2, 0.2, 0.8]
    rm = [3.0, 2.0, 1.0, 0.0, 5.0, 1.0]
    assert _rm_accuracy_vs_gold(rm, gold, 3) == pytest.approx(4 / 5)


@pytest.mark.slow
def test_real_demo_improves_gold_score(tmp_path):
    summary = run(DemoConfig(output_dir=str(tmp_path)))
    assert summary["gold"]["after"] > summary["gold"]["before"] + 0.1
    assert summary["timings_s"]["total"] < 20 * 60


def test_demo_with_the_ai_judge_as_teacher(tmp_path):
    summary = run(DemoConfig(output_dir=str(tmp_path), teacher="ai", judge="tiny", **TINY))
    assert summary["annotator"]["teacher"] == "ai"
    judge = summary["annotator"]["judge"]
    # 3 prompts x C(3, 2) pairs, each asked in both orders
    assert judge["pairs"] == 9 and judge["queries"] == 18
    assert (tmp_path / "judge_cache.sqlite").is_file()
    assert 0.0 <= summary["annotator"]["agreement"] <= 1.0


@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_rl_demo_on_the_tiny_model(method, tmp_path):
    """`--method ppo|grpo|rloo`: RL against the demo's reward model, then a side-by-side with DPO."""
    summary = run(
        DemoConfig(
            output_dir=str(tmp_path),
            method=method,
            rl_steps=2,
            rl_prompts_per_step=2,
            rl_num_generations=2,
            **TINY,
        )
    )
    rl = summary["rl"]
    assert rl["method"] == method and rl["steps"] == 2
    assert (tmp_path / "rl.png").is_file() and (tmp_path / method / "final" / "config.json").is_file()
    report = (tmp_path / "report.md").read_text()
    assert f"## {method.upper()} against the reward model, side by side with DPO" in report
    assert {method, f"{method} eval"} <= set(summary["timings_s"])
    rows = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("kl" in r and "kl/coef" in r for r in rows)
