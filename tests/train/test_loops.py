"""Every training command on the tiny random model: runs, changes weights, logs, saves loadable
outputs; plus the invariants (resume == uninterrupted, batch x accumulation, precomputed ==
live reference) and the bad-input errors."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefloop.cli import main
from prefloop.train.logs import read_metrics
from prefloop.train.run import Run
from prefloop.train.schedule import split_eval

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"
REQUIRED = {"step", "loss", "step_time_s", "tokens", "learning_rate"}
PROBE = "model.layers.0.self_attn.q_proj.weight"  # a backbone weight both heads share


def run(command: str, out: Path, *args: str) -> Path:
    main([command, "--model", "tiny", "--output-dir", str(out), "--report-to-tensorboard", "no", *args])
    return out


def train_rows(out: Path) -> list[dict]:
    return [r for r in read_metrics(out) if "loss" in r]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def tiny_weights():
    from prefloop.models.load import resolve_model

    return weights(Path(resolve_model("tiny")))


SMOKE = {
    "sft": (
        "sft",
        [
            "--config",
            "examples/sft.yaml",
            "--max-steps",
            "2",
            "--learning-rate",
            "1e-3",
            "--report-to-tensorboard",
            "yes",
            "--eval-fraction",
            "0.25",
        ],
    ),
    "reward-ranked-pl": (
        "reward",
        [
            "--data",
            "examples/data/ranked.jsonl",
            "--ranking-kind",
            "plackett_luce",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--learning-rate",
            "1e-3",
        ],
    ),
    "reward-lora": (
        "reward",
        [
            "--data",
            "examples/data/pairs.jsonl",
            "--lora",
            "--lora-r",
            "4",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--learning-rate",
            "1e-2",
        ],
    ),
    "ipo-chat": (
        "ipo",
        [
            "--config",
            "examples/ipo.yaml",
            "--data",
            "examples/data/chat_pairs.jsonl",
            "--max-steps",
            "2",
            "--learning-rate",
            "1e-3",
            "--eval-fraction",
            "0.25",
        ],
    ),
    "kto": (
        "kto",
        [
            "--config",
            "examples/kto.yaml",
            "--max-steps",
            "2",
            "--learning-rate",
            "1e-3",
            "--gradient-checkpointing",
            "--eval-fraction",
            "0.25",
            "--eval-steps",
            "1",
        ],
    ),
    "pl_dpo": ("dpo", ["--config", "examples/pl_dpo.yaml", "--max-steps", "2", "--learning-rate", "1e-3"]),
}


@pytest.mark.parametrize("case", list(SMOKE))
def test_command_smoke(case, tmp_path, monkeypatch, tiny_weights):
    command, args = SMOKE[case]
    monkeypatch.chdir(REPO)  # the example configs name their data relative to the repository
    out = run(command, tmp_path / case, *args)

    rows = train_rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row) >= REQUIRED, row
        assert math.isfinite(row["loss"]) and row["tokens"] > 0
    config = (out / "config.yaml").read_text()
    assert "model: tiny" in config
    if command in ("ipo", "kto"):
        assert f"loss: {command}" in config  # the command sets the loss
    final = out / "final"
    assert (final / "tokenizer.json").exists()
    assert not torch.equal(weights(final)[PROBE], tiny_weights[PROBE]), "training did not change the weights"

    if command == "reward":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(final, num_labels=1)
        assert model.config.num_labels == 1
        assert json.loads((out / "eval.json").read_text())["num_eval"] >= 1
        assert {"accuracy", "margin"} <= set(rows[0])
    else:
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(final)
    if case == "sft":
        assert any((out / "tensorboard").iterdir())  # event files next to metrics.jsonl
    if case in ("sft", "ipo-chat", "kto"):  # held-out evaluation at the end (and every step for kto)
        result = json.loads((out / "eval.json").read_text())
        assert math.isfinite(result["eval/loss"])
    if case == "kto":
        assert "eval/loss" in rows[0] and "eval/kl_baseline" in rows[0]
    if case == "reward-lora":
        assert (out / "adapter" / "adapter_config.json").exists()
    if command == "kto":
        assert {"kl_baseline", "rewards/desirable"} <= set(rows[-1]) or {
            "kl_baseline",
            "rewards/undesirable",
        } <= set(rows[-1])
    _check_metrics_documented(command, rows, out)
    if case == "pl_dpo":
        assert {"rewards/accuracy", "rewards/margin", "logratio/chosen"} <= set(rows[0]) and "kl" not in rows[
            0
        ]


DOC_PAGES = {"sft": "sft.md", "reward": "reward_model.md", "dpo": "dpo.md", "ipo": "ipo.md", "kto": "kto.md"}


def _check_metrics_documented(command: str, rows: list[dict], out: Path) -> None:
    """Every key the run logged (metrics.jsonl, eval.json) is named, in backticks, on its docs page."""
    page = (REPO / "docs" / "algorithms" / DOC_PAGES[command]).read_text()
    logged = {k for row in read_metrics(out) for k in row}
    if (out / "eval.json").exists():
        logged |= set(json.loads((out / "eval.json").read_text()))
    missing = sorted(k for k in logged if f"`{k}`" not in page and f"`{k.removeprefix('eval/')}`" not in page)
    assert not missing, f"docs/algorithms/{DOC_PAGES[command]} does not document {missing}"
    if any(k.startswith("eval/") for k in logged):
        assert "`eval/`" in page, "the page does not say what the eval/ prefix means"


def test_reward_bias_makes_mean_training_reward_zero(tmp_path, monkeypatch, tiny_weights):
    """Pairwise + margin reward model from the example config; after training the mean reward
    over the training responses is 0 (the seeds' normalisation), and held-out accuracy is reported."""
    from transformers import AutoModelForSequenceClassification

    from prefloop.data.io import read_records
    from prefloop.rewards.model import RewardModelScorer

    monkeypatch.chdir(REPO)
    out = run(
        "reward",
        tmp_path / "rm",
        "--config",
        "examples/reward.yaml",
        "--max-steps",
        "3",
        "--learning-rate",
        "1e-3",
    )  # the example: eval_fraction 0.25, use_margin
    rows = train_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert REQUIRED | {"accuracy", "margin", "target_margin"} <= set(rows[0])
    assert not torch.equal(weights(out / "final")[PROBE], tiny_weights[PROBE])
    assert (
        AutoModelForSequenceClassification.from_pretrained(out / "final", num_labels=1).config.num_labels == 1
    )

    records = read_records(DATA / "pairs.jsonl")
    train_idx, eval_idx = split_eval(len(records), 0.25, seed=0)
    assert len(eval_idx) == 4
    train = [records[i] for i in train_idx]
    responses = {(r.prompt, y) for r in train for y in (r.chosen, r.rejected)}
    prompts, completions = zip(*sorted(responses))
    scores = RewardModelScorer(out / "final", batch_size=8)(list(prompts), list(completions))
    assert abs(sum(scores) / len(scores)) < 1e-4
    assert len(set(round(s, 5) for s in scores)) > 1  # not a constant model
    result = json.loads((out / "eval.json").read_text())
    assert 0.0 <= result["eval/accuracy"] <= 1.0 and result["eval/num_pairs"] == 4
    assert result["num_eval"] == 4 and result["num_train"] == 12


DPO_MOVES = [
    "--batch-size",
    "4",
    "--grad-accum",
    "2",
    "--max-steps",
    "3",
    "--learning-rate",
    "3e-3",
    "--lr-scheduler",
    "constant",
]


@pytest.fixture(scope="module")
def eight_pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs8.jsonl"
    path.write_text("".join((DATA / "pairs.jsonl").read_text().splitlines(keepends=True)[:8]))
    return path


@pytest.fixture(scope="module")
def dpo_moves_run(tmp_path_factory, eight_pairs):
    """DPO on the same 8 pairs every step (one step = the whole data), precomputed reference."""
    return run("dpo", tmp_path_factory.mktemp("dpo") / "pre", "--data", str(eight_pairs), *DPO_MOVES)


def test_dpo_moves_implied_rewards(dpo_moves_run, tiny_weights):
    """A few DPO steps (batch 4 x accumulation 2): implied-reward margin and accuracy go up from 0, the loss goes down."""
    rows = train_rows(dpo_moves_run)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    assert rows[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-6)
    assert rows[-1]["rewards/margin"] > 0.05
    assert rows[-1]["rewards/accuracy"] > 0.5
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert {"rewards/chosen", "rewards/rejected", "logratio/chosen", "logps/chosen", "logps/rejected"} <= set(
        rows[-1]
    )
    assert "kl" not in rows[-1]  # the chosen log-ratio on offline data is not a KL
    assert not torch.equal(weights(dpo_moves_run / "final")[PROBE], tiny_weights[PROBE])
    assert "loss: dpo" in (dpo_moves_run / "config.yaml").read_text()


def test_precomputed_reference_equals_live(dpo_moves_run, eight_pairs, tmp_path):
    live = run("dpo", tmp_path / "live", "--data", str(eight_pairs), *DPO_MOVES, "--no-precompute-ref")
    for a, b in zip(train_rows(dpo_moves_run), train_rows(live), strict=True):
        for key in ("loss", "rewards/margin", "rewards/chosen", "logratio/chosen"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    args = [
        "--data",
        str(DATA / "pairs.jsonl"),
        "--max-steps",
        "4",
        "--save-steps",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--warmup-steps",
        "1",
        "--lr-scheduler",
        "linear",
    ]
    full = run("dpo", tmp_path / "full", *args)
    assert (full / "checkpoints" / "step-2").is_dir()

    original = Run.step_done

    def crash_after_step_2(self, step, *a, **k):
        original(self, step, *a, **k)
        if step + 1 == 2:
            raise KeyboardInterrupt  # the process dies right after saving step 2

    monkeypatch.setattr(Run, "step_done", crash_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        run("dpo", tmp_path / "resumed", *args)
    monkeypatch.undo()
    assert not (tmp_path / "resumed" / "final").exists()
    resumed = run("dpo", tmp_path / "resumed", *args, "--resume")

    # Bitwise equal on CPU; the tolerance only absorbs nondeterministic GPU kernels.
    assert [r["step"] for r in train_rows(resumed)] == [1, 2, 3, 4]
    for r1, r2 in zip(train_rows(resumed), train_rows(full), strict=True):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-6, abs=1e-7)
        assert r1["learning_rate"] == r2["learning_rate"]
    a, b = weights(full / "final"), weights(resumed / "final")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


@pytest.mark.parametrize("command,data", [("sft", "sft.jsonl"), ("kto", "binary.jsonl")])
def test_batch_times_accumulation_equivalence(command, data, tmp_path):
    base = [
        "--data",
        str(DATA / data),
        "--max-steps",
        "2",
        "--learning-rate",
        "1e-3",
        "--max-grad-norm",
        "1e9",
    ]
    one = run(command, tmp_path / "b4", *base, "--batch-size", "4", "--grad-accum", "1")
    two = run(command, tmp_path / "b2x2", *base, "--batch-size", "2", "--grad-accum", "2")
    for r1, r2 in zip(train_rows(one), train_rows(two), strict=True):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5, abs=1e-6)
        assert r1["grad_norm"] == pytest.approx(r2["grad_norm"], rel=1e-4)  # same gradient, before clipping
        assert r1["tokens"] == r2["tokens"]


def test_lora_dpo_writes_adapter_and_merged_final(tmp_path, tiny_weights):
    from transformers import AutoModelForCausalLM

    out = run(
        "dpo",
        tmp_path / "lora",
        "--data",
        str(DATA / "pairs.jsonl"),
        "--lora",
        "--lora-r",
        "4",
        "--no-precompute-ref",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-2",
    )
    rows = train_rows(out)
    # The reference is the adapter-disabled base, and LoRA starts as a no-op: step 1 is exactly ln 2.
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[1]["rewards/margin"] != 0.0
    assert (out / "adapter" / "adapter_config.json").exists()
    merged = weights(out / "final")
    assert not any("lora" in k for k in merged)
    assert not torch.equal(merged[PROBE], tiny_weights[PROBE])
    AutoModelForCausalLM.from_pretrained(out / "final")


def test_missing_field_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(SystemExit) as exc:
        run("dpo", tmp_path / "out", "--data", str(bad))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "prefs.jsonl:2" in err and "rejected" in err
    assert "Traceback" not in err


def test_unknown_flag_is_an_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run("sft", tmp_path / "out", "--data", str(DATA / "sft.jsonl"), "--no-such-flag", "1")
    assert exc.value.code == 2


def test_unknown_yaml_key_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: x.jsonl\nbta: 0.1\n")
    with pytest.raises(SystemExit) as exc:
        main(["dpo", "--config", str(cfg)])
    assert exc.value.code == 2
    assert "bta" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sft", "reward", "dpo", "kto"])
def test_help_documents_every_field(command, capsys):
    import dataclasses
    import importlib

    from prefloop.cli import COMMANDS

    module = importlib.import_module(COMMANDS[command][0])
    cls = {"sft": "SFTConfig", "reward": "RewardConfig", "dpo": "DPOConfig", "kto": "KTOConfig"}[command]
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(getattr(module, cls)):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "Peak learning rate" in text and "Number of optimizer steps" in text


def test_every_example_config_loads_and_names_existing_data():
    from prefloop.config import load_yaml
    from prefloop.train.preference import DPOConfig, IPOConfig, KTOConfig
    from prefloop.train.reward_model import RewardConfig
    from prefloop.train.sft import SFTConfig

    classes = {
        "sft": SFTConfig,
        "reward": RewardConfig,
        "dpo": DPOConfig,
        "pl_dpo": DPOConfig,
        "dpo_lora": DPOConfig,
        "ipo": IPOConfig,
        "kto": KTOConfig,
    }
    found = sorted(p.stem for p in (REPO / "examples").glob("*.yaml"))
    assert set(classes) <= set(found)
    for name in found:
        if name not in classes:
            continue
        cfg = load_yaml(classes[name], REPO / "examples" / f"{name}.yaml")
        assert (REPO / cfg.data).exists(), name


def test_impossible_lengths_are_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(
            "sft",
            tmp_path / "out",
            "--data",
            str(DATA / "sft.jsonl"),
            "--max-length",
            "64",
            "--max-prompt-length",
            "64",
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "max_prompt_length" in err and "Traceback" not in err


def test_a_new_pairwise_loss_is_one_registry_line(monkeypatch):
    """The loop dispatches on the family and reads options from config fields of the same name."""
    from prefloop.losses import PREFERENCE_LOSSES
    from prefloop.train.preference import PreferenceConfig, preference_loss

    seen = {}

    def hinge_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0):
        seen.update(beta=beta, label_smoothing=label_smoothing)
        h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
        return torch.relu(1 - beta * h).mean(), {}

    monkeypatch.setitem(PREFERENCE_LOSSES, "hinge", ("pairwise", hinge_loss))
    cfg = PreferenceConfig(loss="hinge", beta=0.5, label_smoothing=0.2)  # type: ignore[arg-type]
    policy = torch.tensor([-1.0, -3.0, -2.0, -2.0])  # (chosen, rejected) of two pairs
    ref = torch.tensor([-2.0, -2.0, -2.0, -2.0])
    loss, metrics = preference_loss(cfg, [{}, {}], policy, ref)
    # h = (1) − (−1) = 2 and 0 − 0 = 0: relu(1 − 0.5·2) = 0, relu(1 − 0) = 1; mean 0.5
    assert loss.item() == pytest.approx(0.5)
    assert seen == {"beta": 0.5, "label_smoothing": 0.2}
    assert metrics["logratio/chosen"] == pytest.approx(0.5)  # chosen log-ratio mean: (1 + 0) / 2
    assert "kl" not in metrics


def test_reward_data_with_only_ties_is_a_one_line_error(tmp_path, capsys):
    data = tmp_path / "tied.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"p{i}", "responses": ["a", "b", "c"], "ranks": [1, 1, 1]}) + "\n"
            for i in range(6)
        )
    )
    with pytest.raises(SystemExit) as exc:
        run("reward", tmp_path / "out", "--data", str(data))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "tied.jsonl" in err and "tie" in err and "Traceback" not in err


def test_reward_step_of_tied_rankings_only_logs_zero_loss(tmp_path):
    # one ordered ranking and three all-tied ones, one per step: the tied steps have no pair to
    # weigh (no gradient) and log loss 0 instead of failing
    data = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "p0", "responses": ["a", "b"], "ranks": [1, 2]}]
    rows += [{"prompt": f"p{i}", "responses": ["a", "b"], "ranks": [1, 1]} for i in range(1, 4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run("reward", tmp_path / "out", "--data", str(data), "--batch-size", "1", "--eval-fraction", "0")
    losses = [r["loss"] for r in train_rows(out)]
    assert len(losses) == 4 and losses.count(0.0) == 3 and min(losses) == 0.0 < max(losses)
