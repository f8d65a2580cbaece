"""Evaluation metrics of a policy: gold score, KL to a reference model, win rate.

- `gold_score(gold, prompts, completions)`: the mean of a gold judge's scores (plus the
  per-response list), e.g. over samples on held-out prompts.
- `kl_to_reference(policy, reference, prompt_ids, response_ids)`: a Monte Carlo estimate of
  KL(π ‖ π_ref) per sequence,

      KL ≈ (1/N) Σ_n [log π(y_n | x_n) − log π_ref(y_n | x_n)],   y_n ~ π(· | x_n)

  (the "k1" estimator; Schulman, "Approximating KL divergence", 2020). Each log-prob is a
  sum over the response tokens from one teacher-forced forward pass per model over exactly
  the ids that were sampled: the prompt ids handed to generation plus the completion's
  `token_ids` (`prefloop.generation.hf.Completion`), which end with the stop token only
  when the model stopped by itself. A reply cut at `max_new_tokens` gets no end token, and
  nothing is decoded and re-encoded (text does not round-trip to the same ids). The
  sequence KL is then that of the sampling process itself, whose replies stop at a stop
  token or at the cap. The estimate is unbiased only when y_n were sampled from π at
  temperature 1 with no truncation (top-p 1, no top-k); on greedy outputs it is a
  log-ratio, not a KL. Individual terms can be negative; the mean converges to a
  non-negative number. With a PEFT policy, `reference=None` uses the adapter-disabled base
  as π_ref.
- `win_rate(before, after, gold, prompts)`: the share of prompts where the gold judge scores
  `after[i]` above `before[i]`, ties counting one half.

Shapes: prompts and completions (or prompt ids and response ids) are parallel lists of N
items; log-probs come back as N floats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from prefloop.data.records import PromptText
from prefloop.rewards.base import RewardFn


def gold_score(
    gold: RewardFn, prompts: Sequence[PromptText], completions: Sequence[str]
) -> tuple[float, list[float]]:
    """(mean gold score, per-completion scores)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if not completions:
        raise ValueError("gold_score needs at least one completion")
    scores = [float(s) for s in gold(list(prompts), list(completions))]
    return sum(scores) / len(scores), scores


@torch.no_grad()
def sequence_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> list[float]:
    """log π(y | x) = Σ_t log π(y_t | x, y_<t) per sequence, teacher-forced on exactly these ids.

    `prompt_ids[n]` is what the model was conditioned on, `response_ids[n]` the tokens whose
    log-probs are summed (all of them, a final stop token included when it is there).
    Sequences are right-padded, so padding never changes a scored position.
    """
    from prefloop.data.tokenize import TokenizedSequence, pad_batch
    from prefloop.models.logps import response_logps

    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    for n, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if not p or not r:
            raise ValueError(f"sequence {n}: empty {'prompt' if not p else 'response'} ids")
    seqs = [
        TokenizedSequence(list(p) + list(r), [0] * len(p) + [1] * len(r))
        for p, r in zip(prompt_ids, response_ids)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        for start in range(0, len(seqs), batch_size):
            # Pad id 0 exists in every vocabulary; padded positions are masked and come after
            # every scored position (right padding, causal attention), so its value is never read.
            batch = pad_batch(seqs[start : start + batch_size], pad_id=0)
            batch = {k: v.to(device) for k, v in batch.items()}
            logps, _ = response_logps(
                model, batch["input_ids"], batch["attention_mask"], batch["response_mask"]
            )
            out.extend(logps.float().tolist())
    finally:
        model.train(was_training)
    return out


def kl_to_reference(
    policy,
    reference,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> tuple[float, list[float]]:
    """(mean per-sequence log π − log π_ref over samples from π, the per-sample terms).

    `prompt_ids`/`response_ids`: the sampled sequences as ids (the prompt ids given to the
    generator, each completion's `token_ids`). `reference` is a second causal LM with the
    same vocabulary, or None for the adapter-disabled base of a PEFT `policy`.
    """
    policy_lp = sequence_logprobs(policy, prompt_ids, response_ids, batch_size)
    if reference is None:
        from prefloop.models.load import disabled_adapter

        context: contextlib.AbstractContextManager[Any] = disabled_adapter(policy)
        reference = policy
    else:
        context = contextlib.nullcontext()
    with context:
        ref_lp = sequence_logprobs(reference, prompt_ids, response_ids, batch_size)
    terms = [p - r for p, r in zip(policy_lp, ref_lp)]
    return (sum(terms) / len(terms) if terms else float("nan")), terms


def win_rate(
    before: Sequence[str], after: Sequence[str], gold: RewardFn, prompts: Sequence[PromptText]
) -> float:
    """Share of prompts where gold(after) > gold(before); ties count 1/2."""
    if not (len(before) == len(after) == len(prompts)):
        raise ValueError(f"lengths differ: {len(prompts)} prompts, {len(before)} before, {len(after)} after")
    if not prompts:
        raise ValueError("win_rate needs at least one prompt")
    g_before = gold(list(prompts), list(before))
    g_after = gold(list(prompts), list(after))
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(g_after, g_before))
    return wins / len(prompts)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and its standard error (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, (var / n) ** 0.5
