"""The online RL loop on the tiny model: every command runs (weights change, metrics written,
final/ loads), the importance ratio is exactly 1 before the first update, a resumed PPO run
equals an uninterrupted one, PPO's options (ptx, shared value head, adaptive KL, value model
from the reward model), and a bad reward stops the run with one line."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefloop.cli import main
from prefloop.train.logs import read_metrics
from prefloop.train.run import Run

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "examples" / "data" / "prompts.jsonl"
REWARDS = Path(__file__).resolve().parent / "toy_rewards.py"
FAST = [
    "--max-new-tokens",
    "4",
    "--prompts-per-step",
    "4",
    "--report-to-tensorboard",
    "no",
    "--learning-rate",
    "1e-3",
]


def run(command: str, out: Path, *args: str, reward: str = "frac_e") -> Path:
    main(
        [
            command,
            "--model",
            "tiny",
            "--data",
            str(PROMPTS),
            "--reward",
            f"{REWARDS}:{reward}",
            "--output-dir",
            str(out),
            *FAST,
            *args,
        ]
    )
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def tiny_weights():
    from prefloop.models.load import resolve_model

    return weights(Path(resolve_model("tiny")))


COMMANDS = {
    "ppo": ["--ppo-epochs", "2", "--batch-size", "2"],
    "a2c": [],
    "rloo": ["--num-generations", "2"],
    "grpo": ["--num-generations", "2"],
    "reinforce": ["--num-generations", "2"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_runs_and_saves_loadable_policy(command, tmp_path, tiny_weights):
    out = run(command, tmp_path / command, "--max-steps", "2", *COMMANDS[command])
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for key in (
        "loss",
        "score/mean",
        "kl",
        "logprobs/mismatch_mean",
        "logprobs/mismatch_max",
        "time/generate_s",
        "time/logprobs_s",
        "time/train_forward_backward_s",
        "time/optimizer_s",
    ):
        assert key in rows[0], key
    # The first step samples from the start policy, so trainer and reference agree exactly.
    assert rows[0]["kl"] == 0.0
    after = weights(out / "final")
    assert after.keys() == tiny_weights.keys()
    assert any(not torch.equal(after[k], tiny_weights[k]) for k in after)

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out / "final"))


def test_ratio_is_one_on_first_minibatch_and_logprobs_match_the_generator(tmp_path):
    out = run(
        "ppo",
        tmp_path / "ppo",
        "--max-steps",
        "2",
        "--ppo-epochs",
        "2",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
    )
    for row in read_metrics(out):
        # Old log-probs come from the training model in the same micro-batches: exactly 1.
        assert row["ratio/first_minibatch_max_dev"] == 0.0
        # Later minibatches see updated weights, so the ratio moves away from 1 there.
        assert row["policy/ratio_max"] > 1.0 or row["policy/ratio_min"] < 1.0
        # Sampler (generate with a KV cache) and trainer (one teacher-forced pass) agree up to float error.
        assert row["logprobs/mismatch_max"] < 1e-4
        assert row["optimizer_steps"] == 4  # 2 epochs x 2 minibatches of 2


def test_resume_equals_uninterrupted_ppo(tmp_path, monkeypatch):
    args = [
        "--max-steps",
        "4",
        "--save-steps",
        "2",
        "--ppo-epochs",
        "2",
        "--batch-size",
        "2",
        "--adaptive-kl",
        "--kl-target",
        "0.001",
        "--kl-horizon",
        "10",
        "--reward-normalize",
        "--lr-scheduler",
        "linear",
    ]
    full = run("ppo", tmp_path / "full", *args)
    assert (full / "checkpoints" / "step-2").is_dir()

    original = Run.step_done

    def crash_after_step_2(self, step, *a, **k):
        original(self, step, *a, **k)
        if step + 1 == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Run, "step_done", crash_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        run("ppo", tmp_path / "resumed", *args)
    monkeypatch.undo()
    assert not (tmp_path / "resumed" / "final").exists()
    resumed = run("ppo", tmp_path / "resumed", *args, "--resume")

    a_rows, b_rows = read_metrics(full), read_metrics(resumed)
    assert [r["step"] for r in b_rows] == [1, 2, 3, 4]
    for a, b in zip(a_rows, b_rows, strict=True):
        # Same samples (generator RNG), same β (KL controller), same normaliser, same update.
        for key in ("loss", "score/mean", "kl", "kl/coef", "reward/running_mean", "learning_rate"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert a_rows[-1]["kl/coef"] != a_rows[0]["kl/coef"]  # the adaptive controller moved
    wa, wb = weights(full / "final"), weights(resumed / "final")
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6) for k in wa)


def test_ppo_ptx_shared_value_head_and_dual_clip(tmp_path):
    out = run(
        "ppo",
        tmp_path / "ptx",
        "--max-steps",
        "1",
        "--ppo-epochs",
        "1",
        "--batch-size",
        "4",
        "--ptx-coef",
        "0.5",
        "--ptx-data",
        str(REPO / "examples" / "data" / "sft.jsonl"),
        "--value-head",
        "shared",
        "--dual-clip",
        "3.0",
        "--entropy-coef",
        "0.01",
    )
    row = read_metrics(out)[0]
    assert row["ptx/coef"] == 0.5 and row["ptx/nll"] > 0
    assert "value/loss" in row and "entropy" in row and "policy/dual_clip_fraction" in row


def test_value_model_starts_from_the_reward_model_when_tokenizers_match(tmp_path):
    from prefloop.models.load import load_tokenizer, resolve_model
    from prefloop.train.online import PPOConfig, value_source

    tokenizer = load_tokenizer("tiny")
    rm = resolve_model("tiny-reward")
    assert value_source(PPOConfig(model="tiny", reward=f"rm:{rm}"), tokenizer) == str(Path(rm))
    assert value_source(PPOConfig(model="tiny", reward="gold:positive_replies"), tokenizer) == "tiny"
    assert value_source(PPOConfig(model="tiny", reward=f"rm:{rm}", value_model="policy"), tokenizer) == "tiny"


def test_early_stop_on_approx_kl(tmp_path):
    out = run(
        "ppo",
        tmp_path / "stop",
        "--max-steps",
        "1",
        "--ppo-epochs",
        "4",
        "--batch-size",
        "2",
        "--learning-rate",
        "5e-2",
        "--early-stop-kl",
        "1e-9",
    )
    row = read_metrics(out)[0]
    assert row["early_stopped"] == 1 and row["optimizer_steps"] < 8


@pytest.mark.parametrize(
    ("reward", "expected"),
    [
        ("nan_reward", "returned nan for completion 0"),
        ("too_few", "returned 3 scores for 4 completions"),
        ("raises", "raised RuntimeError: judge offline"),
    ],
)
def test_bad_reward_stops_with_one_line(reward, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(
            "reinforce",
            tmp_path / reward,
            "--max-steps",
            "1",
            "--num-generations",
            "1",
            "--prompts-per-step",
            "4",
            "--batch-size",
            "4",
            reward=reward,
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "on batch 1" in err[0] and reward in err[0]


def test_group_method_needs_two_samples(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run("rloo", tmp_path / "k1", "--num-generations", "1")
    assert "num_generations >= 2" in capsys.readouterr().err


def test_best_of_n_picks_the_highest_reward(tmp_path):
    out = tmp_path / "bon"
    main(
        [
            "best-of-n",
            "--model",
            "tiny",
            "--data",
            str(PROMPTS),
            "--reward",
            f"{REWARDS}:frac_e",
            "--output-dir",
            str(out),
            "--n",
            "4",
            "--max-new-tokens",
            "6",
            "--max-steps",
            "5",
        ]
    )
    rows = [json.loads(line) for line in (out / "best_of_n.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        rewards = [s["reward"] for s in row["samples"]]
        assert len(rewards) == 4 and row["reward"] == max(rewards)
        assert row["response"] == row["samples"][rewards.index(max(rewards))]["text"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reward_best_of_n"] >= summary["reward_mean_of_n"]
    assert summary["kl_bound_nats"] == pytest.approx(1.3862944 - 0.75)


def test_rejection_sampling_two_rounds(tmp_path, tiny_weights):
    out = tmp_path / "rs"
    main(
        [
            "rejection-sampling",
            "--model",
            "tiny",
            "--data",
            str(PROMPTS),
            "--reward",
            f"{REWARDS}:frac_e",
            "--output-dir",
            str(out),
            "--rounds",
            "2",
            "--num-samples",
            "3",
            "--max-new-tokens",
            "6",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--learning-rate",
            "1e-3",
            "--report-to-tensorboard",
            "no",
        ]
    )
    history = json.loads((out / "rounds.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    assert all(h["reward_selected"] >= h["reward_all"] for h in history)
    assert len((out / "round-2" / "selected.jsonl").read_text().splitlines()) == 16
    after = weights(out / "final")
    assert any(not torch.equal(after[k], tiny_weights[k]) for k in after)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out / "final"))


@pytest.mark.parametrize(("command", "name"), [("ppo", "ppo.yaml"), ("grpo", "grpo.yaml")])
def test_example_configs_parse(command, name):
    from prefloop.config import load_yaml
    from prefloop.train.online import CONFIGS

    cls = CONFIGS[command]
    cfg = load_yaml(cls, str(REPO / "examples" / name), base=cls())
    assert cfg.reward == "gold:positive_replies" and cfg.data == "examples/data/prompts.jsonl"


def test_reward_hacking_warning_names_the_step(tmp_path, capsys):
    """The training reward rises every step while the watch falls: warned once, at step 3 (window 3)."""
    out = tmp_path / "hack"
    main(
        [
            "grpo",
            "--model",
            "tiny",
            "--data",
            str(PROMPTS),
            "--reward",
            f"{REWARDS}:Rising",
            "--watch-reward",
            f"{REWARDS}:Falling",
            "--watch-window",
            "3",
            "--num-generations",
            "2",
            "--max-steps",
            "4",
            "--output-dir",
            str(out),
            *FAST,
        ]
    )
    rows = [r for r in read_metrics(out) if "watch/score" in r]
    assert [round(r["watch/score"], 6) for r in rows] == [-0.1, -0.2, -0.3, -0.4]
    assert [r["watch/hacking"] for r in rows] == [0.0, 0.0, 1.0, 0.0]  # said once, when the window filled
    err = capsys.readouterr().err
    assert "possible reward hacking at step 3" in err and err.count("possible reward hacking") == 1


def test_an_online_checkpoint_loads_as_its_policy_for_evaluation(tmp_path, tiny_weights):
    # the checkpoint holds policy.* and value.* (PPO's critic); eval rebuilds the policy alone
    from prefloop.eval.sampling import load_checkpoint_model

    out = run("ppo", tmp_path / "ppo", "--max-steps", "2", "--save-steps", "1")
    saved = load_file(str(out / "checkpoints" / "step-1" / "trainable.safetensors"))
    assert any(k.startswith("value.") for k in saved)
    policy = load_checkpoint_model(out, 1).state_dict()
    for name, tensor in saved.items():
        if name.startswith("policy."):
            assert torch.equal(policy[name.removeprefix("policy.")], tensor), name
    assert any(not torch.equal(policy[k], v) for k, v in tiny_weights.items() if k in policy)
