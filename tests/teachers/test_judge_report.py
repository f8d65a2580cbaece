"""`prefloop judge-report` on the tiny judge, and its agreement measures by hand."""

import json

import pytest

from prefloop.judge_report import JudgeReportConfig, gold_agreement, run, verdict_agreement


def test_agreement_measures_by_hand():
    # gold: a wins, b wins, a wins, equal (not counted); verdicts: a (right), tie (½), b (wrong), a
    agree, decisive, n = gold_agreement(["a", "tie", "b", "a"], [0.3, -0.2, 0.1, 0.0])
    assert n == 3 and agree == pytest.approx(1.5 / 3) and decisive == pytest.approx(1 / 2)
    assert verdict_agreement("a", "a") == 1.0 and verdict_agreement("a", "tie") == 0.5
    assert verdict_agreement("a", "b") == 0.0 and verdict_agreement("skip", "a") is None


def test_report_on_the_tiny_judge(tmp_path):
    data = tmp_path / "gen.jsonl"
    rows = [
        {
            "prompt": "Say hi",
            "responses": [{"text": "Hello, lovely to see you!"}, {"text": "Go away, I hate this."}],
        },
        {
            "prompt": "Cheer me up",
            "responses": ["You are great and loved!", "Nothing matters.", "Okay.", "Wonderful!"],
        },
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = JudgeReportConfig(
        data=str(data), judge="tiny", judge_cache=str(tmp_path / "c.sqlite"), output_dir=str(tmp_path / "out")
    )
    report = run(cfg)
    assert report["pairs"] == 3 and report["judge"] == "ai:tiny"
    assert report["rerun_cache_hits"] == report["rerun_queries"] == 6
    assert 0 <= report["gold_agreement"] <= 1 and 0 <= report["position_bias_rate"] <= 1
    assert report["simulated_pool"]["sim:oracle"]["gold_agreement"] == 1.0
    assert (tmp_path / "out" / "judge_report.md").read_text().startswith("# Judge report: ai:tiny")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(Exception, match=r"bad.jsonl:1: field 'responses'"):
        run(JudgeReportConfig(data=str(bad), judge="tiny", judge_cache="", output_dir=str(tmp_path / "o2")))
