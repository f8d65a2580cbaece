"""The online loops on 2 processes (DDP, gloo, CPU) equal 1 process.

Each rank samples and scores its half of a step's prompts (a prompt's K completions stay on its
rank); with per-prompt sampling seeds (`--prompt-seeds on`) the samples of a prompt are the
same whichever process draws them, so both runs see the same rollouts, and the update must be
the same: same scores, KL and advantage statistics per step, same gradient norm, same final
weights within float tolerance (the micro-batches group the sequences differently). GRPO
covers group baselines and the KL loss term with the old log-probs taken from the first
minibatch's training forward; PPO covers the value model, GAE and advantage whitening over the
whole rollout, over 2 epochs of 2 minibatches.
"""

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


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    jobs = [
        {"argv": [name, *COMMON, *flags, "--output-dir", str(root / "2p" / name)]}
        for name, flags in CASES.items()
    ]
    launch("ddp.yaml", jobs, root)
    for name, flags in CASES.items():
        main([name, *COMMON, *flags, "--output-dir", str(root / "1p" / name)])
    return root


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
    from prefloop.models.load import resolve_model

    start = load_file(str(Path(resolve_model("tiny")) / "model.safetensors"))
    probe = "model.layers.0.self_attn.q_proj.weight"
    assert (final_weights(two)[probe] - start[probe]).abs().max() > 1e-4  # the updates were not nothing
    assert rows1[0]["score/mean"] != rows1[1]["score/mean"]  # the steps sampled different rollouts


def test_prompt_seeds_make_a_prompts_samples_independent_of_its_neighbours():
    """What makes the rollouts equal: with per-prompt seeds, the last two prompts sampled as the
    second rank's share (positions 2, 3) give the completions they get among all four."""
    from prefloop.data.io import read_records
    from prefloop.generation.hf import HFGenerator
    from prefloop.models.load import load_causal_lm, load_tokenizer
    from prefloop.train.online import _sample

    prompts = [r.prompt for r in read_records(str(DATA / "prompts.jsonl"), kind="prompt")[:4]]
    generator = HFGenerator(load_causal_lm("tiny"), load_tokenizer("tiny"), max_new_tokens=6, batch_size=8)
    whole = _sample(generator, prompts, 2, 0, seeds=7, step=3)
    share = _sample(generator, prompts[2:], 2, 2, seeds=7, step=3)
    assert [c.token_ids for c in share] == [c.token_ids for c in whole[4:]]
    assert [c.prompt_index for c in share] == [0, 0, 1, 1]  # within the share (the loop adds its offset)
    # one seeded stream batched across prompts draws other samples for the same prompts
    batched = generator.generate(prompts, 2, seed=7)
    assert [c.token_ids for c in batched[4:]] != [c.token_ids for c in whole[4:]]
    # and the step matters: another step samples afresh
    assert [c.token_ids for c in _sample(generator, prompts[2:], 2, 2, seeds=7, step=4)] != [
        c.token_ids for c in share
    ]
