"""The online loops on 2 processes (DDP, gloo, CPU) equal 1 process.

Each rank samples and scores its half of a step's prompts (a prompt's K completions stay on its
rank); with per-prompt sampling seeds (`--prompt-seeds on`) the samples of a prompt are the
same whichever process draws them, so both runs see the same rollouts, and the update must be
the same: same scores, KL and advantage statistics per step, same gradient norm, same final
weights within float tolerance (the micro-batches group the sequences differently). GRPO
covers group baselines and the KL loss term with the old log-probs taken from the first
minibatch's training forward; PPO covers the value model, GAE and advantage whitening over the
whole rollout, over 2 epochs of 2 minibatches.

Online DPO and Nash-MD (`prefloop.train.online_preference`) share the sampling and gathering:
each rank samples its half of the prompts (Nash-MD's mixture alternatives too), rank 0 asks the
teacher about the whole step, each rank weighs its pairs' loss by its share. Online DPO runs with
the stochastic simulated teacher (coin flips on these random replies: equal only if rank 0 draws
them from one stream in the step's order), Nash-MD with a reward teacher (soft preferences).
"""

import json
from pathlib import Path

import pytest
from distrun import ATOL, DATA, REPO, assert_same_weights, final_weights, launch, train_rows
from safetensors.torch import load_file

from prefloop.cli import main

COMMON = [
    "--model",
    "tiny",
    "--data",
    str(DATA / "prompts.jsonl"),
    "--reward",
    f"{REPO / 'tests' / 'online' / 'toy_rewards.py'}:frac_e",
    "--report-to-tensorboard",
    "no",
    "--learning-rate",
    "1e-3",
    "--max-steps",
    "2",
    "--prompts-per-step",
    "4",
    "--max-new-tokens",
    "6",
    "--batch-size",
    "2",
    "--grad-accum",
    "2",
    "--save-steps",
    "0",
    "--prompt-seeds",
    "on",
]
CASES = {
    "grpo": ["--num-generations", "2"],
    "ppo": ["--num-generations", "2", "--ppo-epochs", "2"],
}
SAME = ["score/mean", "kl", "advantages/mean", "advantages/std", "response_length", "grad_norm"]
PREFERENCE = [
    "--model",
    "tiny",
    "--prompts",
    str(DATA / "prompts.jsonl"),
    "--num-eval-prompts",
    "2",
    "--report-to-tensorboard",
    "no",
    "--learning-rate",
    "1e-3",
    "--max-steps",
    "2",
    "--batch-size",
    "4",
    "--max-new-tokens",
    "6",
    "--save-steps",
    "0",
    "--prompt-seeds",
    "on",
]
PREFERENCE_CASES = {
    "online-dpo": ["--teacher", "sim"],
    "nash-md": [
        "--teacher",
        "reward",
        "--reward-model",
        f"{REPO / 'tests' / 'online' / 'toy_rewards.py'}:frac_e",
    ],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case on 2 processes (one launch) and on 1 (in this process)."""
    root = tmp_path_factory.mktemp("online")
    cases = [(name, [*COMMON, *flags]) for name, flags in CASES.items()]
    cases += [(name, [*PREFERENCE, *flags]) for name, flags in PREFERENCE_CASES.items()]
    launch(
        "ddp.yaml",
        [{"argv": [name, *args, "--output-dir", str(root / "2p" / name)]} for name, args in cases],
        root,
    )
    for name, args in cases:
        main([name, *args, "--output-dir", str(root / "1p" / name)])
    return root


def changed(run: Path) -> float:
    from prefloop.models.load import resolve_model

    start = load_file(str(Path(resolve_model("tiny")) / "model.safetensors"))
    probe = "model.layers.0.self_attn.q_proj.weight"
    return (final_weights(run)[probe] - start[probe]).abs().max().item()


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_process(runs, name):
    two, one = runs / "2p" / name, runs / "1p" / name
    rows2, rows1 = train_rows(two), train_rows(one)
    assert [r["step"] for r in rows2] == [1, 2]  # rank 0 alone writes
    for r2, r1 in zip(rows2, rows1, strict=True):
        assert r2["completions"] == r1["completions"] == 8  # 4 prompts x 2, split over the ranks
        assert r2["generated_tokens"] == r1["generated_tokens"]
        # Not compared: `loss` (a mean over micro-batches, which group the sequences differently)
        # and `tokens` (packed slots: a prompt shared by its K completions counts once per row).
        for key in SAME:
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), key
    assert_same_weights(two, one, ATOL)
    assert changed(two) > 1e-4  # the updates were not nothing
    assert rows1[0]["score/mean"] != rows1[1]["score/mean"]  # the steps sampled different rollouts


@pytest.mark.parametrize("name", list(PREFERENCE_CASES))
def test_online_preference_on_two_processes_equals_one_process(runs, name):
    two, one = runs / "2p" / name, runs / "1p" / name
    rows2, rows1 = train_rows(two), train_rows(one)
    assert [r["step"] for r in rows2] == [1, 2]  # rank 0 alone writes
    for r2, r1 in zip(rows2, rows1, strict=True):
        # every metric: the loss is a mean over pairs (prompts), so its rank-weighted mean is one
        # process's; `tokens` counts real tokens (unpacked), summed over the ranks
        assert r2.keys() == r1.keys()
        for key in sorted(set(r1) - {"step_time_s", "time"}):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), key
    assert_same_weights(two, one, ATOL)
    assert changed(two) > 1e-4
    if name == "online-dpo":
        assert rows1[0]["pairs"] > 0  # the coin-flip verdicts picked sides
    else:
        assert rows1[0]["preference"] != 0.5  # soft preferences: the game term has a gradient
    eval2, eval1 = (json.loads((r / "eval.json").read_text()) for r in (two, one))
    assert eval2.keys() == eval1.keys() and eval2["steps"] == 2
    for key in ("win_rate_vs_start", "mean_p_after_vs_start"):
        assert eval2[key] == pytest.approx(eval1[key], abs=1e-6), key


def test_prompt_seeds_make_a_prompts_samples_independent_of_its_neighbours():
    """What makes the rollouts equal: with per-prompt seeds, the last two prompts sampled as the
    second rank's share (positions 2, 3) give the completions they get among all four."""
    from prefloop.data.io import read_records
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer
    from prefloop.train.online import sample_completions

    prompts = [r.prompt for r in read_records(str(DATA / "prompts.jsonl"), kind="prompt")[:4]]
    generator = HFGenerator(load_causal_lm("tiny"), load_tokenizer("tiny"), max_new_tokens=6, batch_size=8)
    whole = sample_completions(generator, prompts, 2, 0, seeds=7, step=3)
    share = sample_completions(generator, prompts[2:], 2, 2, seeds=7, step=3)
    assert [c.token_ids for c in share] == [c.token_ids for c in whole[4:]]
    assert [c.prompt_index for c in share] == [0, 0, 1, 1]  # within the share (the loop adds its offset)
    # one seeded stream batched across prompts draws other samples for the same prompts
    batched = generator.generate(prompts, 2, seed=7)
    assert [c.token_ids for c in batched[4:]] != [c.token_ids for c in whole[4:]]
    # and the step matters: another step samples afresh
    assert [c.token_ids for c in sample_completions(generator, prompts[2:], 2, 2, seeds=7, step=4)] != [
        c.token_ids for c in share
    ]
