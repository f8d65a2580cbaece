"""The per-run report: curves grouped from metrics.jsonl, and report.html written by every loop."""

import json

import pytest

from prefloop.cli import main
from prefloop.train.report import curves, write_run_report


def test_curves_group_metrics_and_derive_throughput():
    rows = [
        {"step": 1, "loss": 0.7, "rewards/accuracy": 0.5, "kl": 0.0, "tokens": 100, "step_time_s": 2.0},
        {"step": 2, "loss": 0.6, "rewards/accuracy": 0.75, "kl": 0.1, "tokens": 300, "step_time_s": 3.0},
        {"step": 2, "eval/loss": 0.65, "eval/note": "text is skipped", "nan": float("nan")},
        {"not_a_step": 1},
    ]
    panels = curves(rows)
    assert panels["loss"] == {"loss": [(1, 0.7), (2, 0.6)], "eval/loss": [(2, 0.65)]}
    assert panels["accuracy"] == {"rewards/accuracy": [(1, 0.5), (2, 0.75)]}
    assert panels["KL and log-ratios"] == {"kl": [(1, 0.0), (2, 0.1)]}
    # 100 tokens / 2 s = 50; 300 / 3 = 100
    assert panels["throughput (tokens/s)"] == {"tokens_per_s": [(1, 50.0), (2, 100.0)]}
    assert "other" not in panels  # the NaN and the text were dropped


def test_report_survives_a_truncated_metrics_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    page = write_run_report(tmp_path).read_text()
    assert "1 logged steps" in page and "data:image/png;base64," in page


@pytest.mark.parametrize("command", ["sft", "dpo"])
def test_every_loop_writes_report_html(tmp_path, command):
    data = tmp_path / "data.jsonl"
    rows = (
        [{"prompt": f"q{i}", "response": f"answer {i}"} for i in range(6)]
        if command == "sft"
        else [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    )
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    main(
        [
            command,
            "--model",
            "tiny",
            "--data",
            str(data),
            "--output-dir",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--eval-fraction",
            "0.34",
        ]
    )
    page = (out / "report.html").read_text()
    assert "<h2>Curves</h2>" in page and "data:image/png;base64," in page
    assert "Evaluation: eval.json" in page and "eval/loss" in page
    assert "<h2>Config</h2>" in page and "tiny" in page


def test_an_extra_logger_that_is_not_installed_is_a_one_line_error(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed here")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "sft",
                "--model",
                "tiny",
                "--data",
                str(data),
                "--output-dir",
                str(tmp_path / "o"),
                "--report-to",
                "mlflow",
            ]
        )
    assert exc.value.code == 2
    assert "report_to mlflow: the package is not installed (pip install mlflow)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # stopped before anything was written
