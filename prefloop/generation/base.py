"""The generation seam: what a sampled response carries, and what a sampling backend offers.

Torch-free on purpose: the online loops, best-of-N, rejection sampling and the `generate`
command program against these two names, and a backend (transformers `generate` in
`prefloop.generation.hf`, an in-process vLLM engine in `prefloop.generation.vllm`) only has to
fill them in.

`Completion` — one sampled response:

    prompt_token_ids     the prompt exactly as the model saw it (chat template applied, no padding)
    token_ids            the sampled response tokens y_1..y_n; ends with the stop token when the
                         model stopped by itself (finish_reason "eos"), else it is
                         max_new_tokens long (finish_reason "length")
    token_logprobs       log q(y_t | x, y_<t) for each response token, where q is the distribution
                         the token was *sampled from* (temperature and top-p applied). With
                         temperature 1 and top-p 1, q is the model's own π, so these are the
                         "old" log-probs of PPO; the trainer recomputes them and the loop logs
                         the mismatch.
    text                 the decoded response, special tokens stripped
    prompt_index         which prompt of the `generate` call this answers (0-based)

`Generator` — the protocol:

    generate(prompts, num_responses=K, seed=None) -> list[Completion]
        K completions for every prompt, prompt-major (all K of prompt 0, then prompt 1, ...),
        so completions[i*K:(i+1)*K] answer prompts[i] (`group_by_prompt` regroups them).
        seed=s: the samples are a function of (s, prompts, K and the backend's settings) only.
        seed=None: continue the backend's own random stream (see rng_state), so consecutive
        calls of a training loop draw fresh samples and a resumed loop draws the same ones.
    update_weights(state_dict_or_model)
        make the backend sample from new policy weights (no-op for an in-process backend that
        shares the training model; a vLLM backend copies the weights in).
    rng_state() / set_rng_state(state)
        the backend's random stream, opaque but picklable (torch.save-able): a loop saves it in
        its checkpoint and restores it on resume to generate exactly what it would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["eos", "length"]
FINISH_REASONS: tuple[str, ...] = ("eos", "length")

__all__ = ["FINISH_REASONS", "Completion", "FinishReason", "Generator", "group_by_prompt"]


@dataclass
class Completion:
    """One sampled response (see the module docstring for each field's exact meaning)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    prompt_token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "length"
    prompt_index: int = 0

    def __post_init__(self) -> None:
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}")
        if self.token_logprobs and len(self.token_logprobs) != len(self.token_ids):
            raise ValueError(f"{len(self.token_logprobs)} token_logprobs for {len(self.token_ids)} token_ids")

    @property
    def logprob(self) -> float:
        """Σ_t token_logprobs[t]: the log-probability of the whole response under the sampler."""
        return float(sum(self.token_logprobs))

    @property
    def num_tokens(self) -> int:
        """Number of response tokens (the stop token included when there is one)."""
        return len(self.token_ids)

    @property
    def stopped(self) -> bool:
        """True when the model ended the response itself (finish_reason == "eos")."""
        return self.finish_reason == "eos"


@runtime_checkable
class Generator(Protocol):
    """Anything that samples K completions per prompt (HF generate, vLLM)."""

    def generate(
        self, prompts: Sequence[Any], num_responses: int = 1, seed: int | None = None
    ) -> list[Completion]: ...

    def update_weights(self, weights: Any) -> None: ...

    def rng_state(self) -> Any: ...

    def set_rng_state(self, state: Any) -> None: ...


def group_by_prompt(
    completions: Sequence[Completion], num_prompts: int | None = None
) -> list[list[Completion]]:
    """Regroup a flat `generate` result into one list per prompt, in prompt order.

    Uses each completion's `prompt_index`; `num_prompts` keeps trailing prompts that got no
    completion (an empty list) and checks that no index is out of range.
    """
    n = num_prompts if num_prompts is not None else 1 + max((c.prompt_index for c in completions), default=-1)
    groups: list[list[Completion]] = [[] for _ in range(n)]
    for c in completions:
        if not 0 <= c.prompt_index < n:
            raise ValueError(f"completion has prompt_index {c.prompt_index}, outside 0..{n - 1}")
        groups[c.prompt_index].append(c)
    return groups
