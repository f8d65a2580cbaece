"""Rewards made of rewards: weighted sums, ensembles of reward models, Llama 2's safety gating.

All are `RewardFn`s and pass ``meta`` / ``batch`` on to their members through `call_reward`, so
a failing member is named in the error.

Formulas (s_m the score of member m for one completion)
---------------------------------------------------------
- `WeightedSum`:      r = Σ_m w_m s_m
- `EnsembleReward`:   μ = mean_m s_m,  σ = sample std_m s_m (Bessel, M − 1), then
                      "mean": μ;   "lcb": μ − k σ (pessimistic);   "ucb": μ + k σ (optimistic)
  (Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization": worst-case and
  uncertainty-weighted objectives; here the lower/upper confidence bound form.)
- `SafetyGatedReward` (Touvron et al. 2023, Llama 2, §3.2.2, eq. 4):
      r = s_safety       if the prompt is flagged unsafe or s_safety < threshold
          s_helpful      otherwise
  Llama 2 compares the safety model's *sigmoid* output with 0.15; our reward models output raw
  logits, so the default threshold is logit(0.15) = −1.7346 on the raw scale (the same rule).
  Llama 2 then whitens the logit of the gated score; use the running normalisation of
  `prefloop.rewards.shaping` for that step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from prefloop.data.records import PromptText
from prefloop.rewards.base import call_reward, reward_name

__all__ = ["ENSEMBLE_COMBINES", "EnsembleReward", "NamedReward", "SafetyGatedReward", "WeightedSum"]

ENSEMBLE_COMBINES = ("mean", "lcb", "ucb")
LLAMA2_SAFETY_THRESHOLD = math.log(0.15 / 0.85)  # logit(0.15) = −1.7346


class NamedReward:
    """Gives a reward a name for messages (the spec it came from) and checks its output."""

    def __init__(self, fn: Any, name: str):
        self.fn, self.name = fn, name

    def __call__(self, prompts, completions, meta=None, batch=None) -> list[float]:
        return call_reward(self.fn, prompts, completions, meta=meta, batch=batch, name=self.name)

    def __repr__(self) -> str:
        return f"NamedReward({self.name!r})"


class WeightedSum:
    """r = Σ w_m · s_m over (weight, reward) terms."""

    def __init__(self, terms: Sequence[tuple[float, Any]]):
        if not terms:
            raise ValueError("a weighted sum needs at least one reward")
        self.terms = [(float(w), fn) for w, fn in terms]
        self.name = " + ".join(f"{w:g}*{reward_name(fn)}" for w, fn in self.terms)

    def __call__(
        self,
        prompts: Sequence[PromptText],
        completions: Sequence[str],
        meta: Sequence[Mapping[str, Any]] | None = None,
        batch: Any = None,
    ) -> list[float]:
        total = [0.0] * len(completions)
        for weight, fn in self.terms:
            scores = call_reward(fn, prompts, completions, meta=meta, batch=batch)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total


class EnsembleReward:
    """Mean, lower (μ − kσ) or upper (μ + kσ) confidence bound of several rewards' scores."""

    def __init__(self, members: Sequence[Any], combine: str = "mean", k: float = 1.0):
        if combine not in ENSEMBLE_COMBINES:
            raise ValueError(f"ensemble combine must be one of {ENSEMBLE_COMBINES}, got {combine!r}")
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if k < 0:
            raise ValueError(f"ensemble k must be >= 0, got {k}")
        self.members, self.combine, self.k = list(members), combine, float(k)
        inner = "|".join(reward_name(m) for m in self.members)
        self.name = f"{combine}" + (f"(k={k:g})" if combine != "mean" else "") + f"[{inner}]"

    def member_scores(self, prompts, completions, meta=None, batch=None) -> list[list[float]]:
        """Each member's scores, [M][N]."""
        return [call_reward(m, prompts, completions, meta=meta, batch=batch) for m in self.members]

    def __call__(self, prompts, completions, meta=None, batch=None) -> list[float]:
        per_member = self.member_scores(prompts, completions, meta, batch)
        out = []
        m = len(per_member)
        for column in zip(*per_member):
            mu = sum(column) / m
            if self.combine == "mean":
                out.append(mu)
                continue
            sigma = math.sqrt(sum((s - mu) ** 2 for s in column) / (m - 1))
            out.append(mu - self.k * sigma if self.combine == "lcb" else mu + self.k * sigma)
        return out


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "unsafe")
    return bool(value)


class SafetyGatedReward:
    """Llama 2's two-model reward: the safety score for unsafe prompts or unsafe replies, else helpfulness.

    ``unsafe_field``: the key of the prompt record's meta that flags an unsafe prompt (true, 1,
    "true", "yes"); prompts without it count as safe. The helpfulness model is run only on the
    completions that need it.
    """

    def __init__(
        self,
        safety: Any,
        helpfulness: Any,
        threshold: float = LLAMA2_SAFETY_THRESHOLD,
        unsafe_field: str = "unsafe",
    ):
        self.safety, self.helpfulness = safety, helpfulness
        self.threshold, self.unsafe_field = float(threshold), unsafe_field
        self.name = f"gate[safety={reward_name(safety)}, helpfulness={reward_name(helpfulness)}]"

    def use_safety(
        self, safety_scores: Sequence[float], meta: Sequence[Mapping[str, Any]] | None
    ) -> list[bool]:
        """Per completion: True where the safety score is the reward."""
        flags = [_flag((m or {}).get(self.unsafe_field)) for m in meta] if meta is not None else None
        return [(flags is not None and flags[i]) or s < self.threshold for i, s in enumerate(safety_scores)]

    def __call__(self, prompts, completions, meta=None, batch=None) -> list[float]:
        safety = call_reward(self.safety, prompts, completions, meta=meta, batch=batch)
        gate = self.use_safety(safety, meta)
        need = [i for i, g in enumerate(gate) if not g]
        out = list(safety)
        if need:
            helpful = call_reward(
                self.helpfulness,
                [prompts[i] for i in need],
                [completions[i] for i in need],
                meta=[meta[i] for i in need] if meta is not None else None,
                batch=batch,
            )
            for i, s in zip(need, helpful):
                out[i] = s
        return out
