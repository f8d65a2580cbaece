"""`prefloop diffusion-dpo` end to end on a tiny budget (seconds of CPU), and its bad-input errors."""

import json
import math

import pytest
import torch

from prefloop.cli import main
from prefloop.train.diffusion_dpo import DiffusionDPOConfig, label_pairs
from prefloop.train.logs import read_metrics

# Small enough for seconds on one thread, large enough that the policy really moves:
# a T = 50 DDPM pretrained for 500 steps, 300 labelled pairs, 200 Diffusion-DPO steps.
SMALL = [
    "--num-timesteps", "50", "--hidden", "128", "--depth", "2", "--pretrain-steps", "500",
    "--num-pairs", "300", "--batch-size", "32", "--steps", "200", "--beta", "0.5",
    "--eval-samples", "200", "--logging-steps", "50",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffdpo") / "run"
    main(["diffusion-dpo", "--output-dir", str(out), *SMALL])
    return out


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_run_writes_its_outputs(run_dir):
    for name in ("config.yaml", "metrics.jsonl", "samples.png", "training.png", "report.md", "summary.json"):
        assert (run_dir / name).is_file(), name
    for name in ("model.pt", "model.json", "metrics.jsonl"):
        assert (run_dir / "reference" / name).is_file(), name
    assert (run_dir / "policy" / "model.pt").is_file()
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    for key in (
        "loss",
        "rewards/accuracy",
        "rewards/margin",
        "errors/policy_chosen",
        "errors/policy_rejected",
        "errors/ref_chosen",
        "errors/ref_rejected",
    ):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert len(read_metrics(run_dir / "reference")) == 10  # pretraining logged every 50 of 500 steps
    report = (run_dir / "report.md").read_text()
    assert "samples.png" in report and "p(digit = 0)" in report


def test_policy_moved_and_loss_fell(run_dir):
    ref = torch.load(run_dir / "reference" / "model.pt", weights_only=True)
    pol = torch.load(run_dir / "policy" / "model.pt", weights_only=True)
    assert ref.keys() == pol.keys()
    assert any(not torch.equal(ref[k], pol[k]) for k in ref)
    s = summary_of(run_dir)
    # At the start policy = reference, so the loss over the labelled pairs is exactly ln 2.
    assert s["pairs_loss_after"] < math.log(2) - 0.05
    assert s["pairs_loss_one_draw_after"] < math.log(2) - 0.05
    assert s["pairs_accuracy_after"] > 0.6
    rows = read_metrics(run_dir)
    assert rows[-1]["loss"] < rows[0]["loss"]  # the training loss falls too
    assert s["pairs_labelled"] == 300
    assert 0.0 < s["rms_pixel_change"] < 2.0  # images from the same noise differ after training


def test_policy_samples_beat_the_reference_on_gold(run_dir):
    s = summary_of(run_dir)
    before, after = s["before"], s["after"]
    se = math.hypot(before["gold_stderr"], after["gold_stderr"])
    assert after["gold_mean"] > before["gold_mean"] + 3 * se
    assert after["target_rate"] > before["target_rate"] + 0.1
    # a classifier the annotator never saw agrees the policy draws more zeros
    assert after["check_target_rate"] > before["check_target_rate"] + 0.1
    assert s["win_rate"]["ci_low"] > 0.5


def test_reference_is_reused_from_an_earlier_run(run_dir, tmp_path):
    out = tmp_path / "again"
    args = ["--num-pairs", "16", "--batch-size", "8", "--steps", "2", "--logging-steps", "1"]
    main(
        ["diffusion-dpo", "--output-dir", str(out), *SMALL, *args, "--reference", str(run_dir / "reference")]
    )
    assert not (out / "reference").exists()  # nothing pretrained
    # the same reference and evaluation seed give the same "before" samples
    assert summary_of(out)["before"] == summary_of(run_dir)["before"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beta", "0"], "beta must be > 0"),
        (["--beta", "-1"], "beta must be > 0"),
        (["--num-pairs", "8", "--batch-size", "16"], "smaller than one batch"),
        (["--steps", "0"], "steps and batch_size must be >= 1"),
        (["--reference", "/nonexistent/ref"], "not a reference directory"),
    ],
)
def test_bad_input_is_a_one_line_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["diffusion-dpo", "--output-dir", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()  # it stopped before writing anything


def test_reference_of_another_architecture_is_refused(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            ["diffusion-dpo", "--output-dir", str(tmp_path / "o"), "--reference", str(run_dir / "reference")]
        )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass the same values" in err


def test_help_documents_every_field(capsys):
    import dataclasses

    with pytest.raises(SystemExit) as exc:
        main(["diffusion-dpo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(DiffusionDPOConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "Rationality" in text


def test_example_config_loads():
    from pathlib import Path

    from prefloop.config import load_yaml

    cfg = load_yaml(DiffusionDPOConfig, Path(__file__).parents[2] / "examples" / "diffusion_dpo.yaml")
    assert cfg.annotator_mistake == 0.1 and cfg.beta == 1.0


def test_noiseless_annotator_always_prefers_the_higher_gold():
    images = torch.arange(8, dtype=torch.float32)[:, None].expand(8, 64)
    scores = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5, 0.5001, 0.3, 0.0])
    cfg = DiffusionDPOConfig(num_pairs=4, annotator_beta=math.inf)
    chosen, rejected, stats = label_pairs(images, scores, cfg)
    # pairs (0, 1), (2, 3), (4, 5), (6, 7): the winners are images 1, 2, 5, 6
    assert chosen[:, 0].tolist() == [1.0, 2.0, 5.0, 6.0]
    assert rejected[:, 0].tolist() == [0.0, 3.0, 4.0, 7.0]
    assert stats == {"pairs_labelled": 4.0, "annotator_agreement_with_gold": 1.0}
