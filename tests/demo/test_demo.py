"""`prefloop demo` end to end: the tiny random model with tiny sizes (fast), the real one (slow)."""

import json
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
    for line in (tmp_path / "preferences.jsonl").read_text().splitlines():
        assert set(json.loads(line)) == {"prompt", "responses", "ranks"}
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2


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
