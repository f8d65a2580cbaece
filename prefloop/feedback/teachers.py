"""Teachers: who says which response is better. Simulated annotators built on a gold judge.

A `Teacher` compares two responses to a prompt (`compare`) and ranks K of them (`rank`).
People are one kind of teacher (through the feedback server); `SimulatedAnnotator` is
another: it knows a hidden gold score g(x, y) (a `RewardFn`, e.g.
`prefloop.rewards.gold.SentimentGold`) and answers with Bradley–Terry noise, so it is
sometimes wrong, as people are.

Model (Bradley & Terry 1952; Plackett 1975 / Luce 1959 for rankings), temperature τ > 0:

    compare:  P(a ≻ b | x) = σ((g(x, a) − g(x, b)) / τ)
    rank:     a Plackett–Luce sample with weights exp(g_i / τ): the order of
              u_i = g_i / τ + G_i, G_i ~ Gumbel(0, 1) i.i.d., sorted high to low.

Sorting Gumbel-perturbed utilities draws exactly from Plackett–Luce (the Gumbel-max trick
applied position after position), and for K = 2 it reduces to the Bradley–Terry
probability above (the difference of two Gumbels is logistic). τ → 0 gives the noiseless
gold order; larger τ gives a noisier annotator. τ = 0 is allowed and means "no noise":
compare picks the higher gold score (a fair coin on exact ties) and rank gives tied
responses equal ranks.

Shapes: `rank(prompt, responses[K]) -> ranks[K]` with ranks[i] the rank of responses[i]
(0 = best), the convention of `prefloop.data.records.RankedResponses`.

Agreement with the noiseless gold (`gold_agreement`) is counted over response pairs whose
gold scores differ; `expected_agreement` is its model value, mean over those pairs of
σ(|Δg| / τ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from prefloop.data.records import PreferencePair, PromptText, RankedResponses
from prefloop.rewards.base import RewardFn


@runtime_checkable
class Teacher(Protocol):
    """Gives preferences: a pairwise choice, or a full ranking of K responses."""

    def compare(self, prompt: PromptText, a: str, b: str) -> PreferencePair:
        """Which of `a` and `b` is better for `prompt`, as a chosen/rejected pair."""
        ...

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int]:
        """ranks[i] = rank of responses[i], 0 = best; ties share a rank."""
        ...


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def order_to_ranks(scores: Sequence[float]) -> list[int]:
    """Dense ranks from scores, higher score = better = lower rank; equal scores tie.

    >>> order_to_ranks([0.1, 0.9, 0.1])
    [1, 0, 1]
    """
    distinct = sorted(set(scores), reverse=True)
    position = {s: r for r, s in enumerate(distinct)}
    return [position[s] for s in scores]


class SimulatedAnnotator:
    """A noisy annotator: Bradley–Terry / Plackett–Luce choices over a hidden gold score.

    Args:
        gold: the hidden judge, a `RewardFn` (prompts, completions) -> scores.
        temperature: τ, the noise scale in gold-score units (0 = noiseless).
        seed: seeds the annotator's own random generator (reproducible labels).
    """

    def __init__(self, gold: RewardFn, temperature: float = 0.25, seed: int = 0):
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        self.gold = gold
        self.temperature = float(temperature)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------ probabilities

    def prob_prefers(self, gold_a: float, gold_b: float) -> float:
        """P(a ≻ b) = σ((g_a − g_b) / τ); with τ = 0: 1, 0, or 1/2 on a tie."""
        diff = gold_a - gold_b
        if self.temperature == 0:
            return 1.0 if diff > 0 else (0.0 if diff < 0 else 0.5)
        return sigmoid(diff / self.temperature)

    # ------------------------------------------------------------ the Teacher API

    def compare(self, prompt: PromptText, a: str, b: str) -> PreferencePair:
        g_a, g_b = self.gold([prompt, prompt], [a, b])
        p = self.prob_prefers(g_a, g_b)
        a_wins = bool(self.rng.random() < p)
        chosen, rejected = (a, b) if a_wins else (b, a)
        return PreferencePair(
            prompt=prompt, chosen=chosen, rejected=rejected, meta={"p_chosen": p if a_wins else 1.0 - p}
        )

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int]:
        if not responses:
            raise ValueError("rank needs at least one response")
        gold = self.gold([prompt] * len(responses), list(responses))
        return self.rank_scores(gold)

    def rank_scores(self, gold: Sequence[float]) -> list[int]:
        """A noisy ranking of items with gold scores `gold` (Gumbel-perturbed utilities)."""
        gold = np.asarray(gold, dtype=float)
        if self.temperature == 0:
            return order_to_ranks(gold.tolist())
        utilities = gold / self.temperature + self.rng.gumbel(size=gold.shape)
        return order_to_ranks(utilities.tolist())

    # ------------------------------------------------------------ batches

    def rank_all(
        self, prompts: Sequence[PromptText], responses: Sequence[Sequence[str]]
    ) -> list[RankedResponses]:
        """Rank each prompt's responses; the gold scores go into meta["gold"] for auditing.

        The gold judge is called once over all responses (batched), then each prompt's
        ranking is drawn in order, so results depend only on the seed and the inputs.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
        flat_prompts = [p for p, rs in zip(prompts, responses) for _ in rs]
        flat_responses = [r for rs in responses for r in rs]
        flat_gold = self.gold(flat_prompts, flat_responses) if flat_responses else []
        out, start = [], 0
        for prompt, rs in zip(prompts, responses):
            gold = [float(g) for g in flat_gold[start : start + len(rs)]]
            start += len(rs)
            out.append(
                RankedResponses(
                    prompt=prompt, responses=list(rs), ranks=self.rank_scores(gold), meta={"gold": gold}
                )
            )
        return out

    def expected_agreement(self, gold_lists: Sequence[Sequence[float]]) -> float:
        """Model agreement with the gold order: mean σ(|Δg|/τ) over pairs with Δg ≠ 0."""
        probs = [
            self.prob_prefers(abs(a - b), 0.0)
            for g in gold_lists
            for i, a in enumerate(g)
            for b in g[i + 1 :]
            if a != b
        ]
        return float(np.mean(probs)) if probs else float("nan")


def gold_agreement(records: Sequence[RankedResponses]) -> float:
    """Fraction of response pairs whose annotated order matches the gold order.

    Uses `meta["gold"]` (as written by `SimulatedAnnotator.rank_all`). A pair counts when
    the gold scores differ; an annotator tie on such a pair counts as half agreement.
    Returns NaN when no pair qualifies.
    """
    total, agree = 0, 0.0
    for rec in records:
        gold = rec.meta.get("gold")
        if gold is None:
            raise ValueError("gold_agreement needs records with meta['gold'] (see rank_all)")
        for i in range(len(rec.responses)):
            for j in range(i + 1, len(rec.responses)):
                if gold[i] == gold[j]:
                    continue
                total += 1
                ri, rj = rec.rank_of(i), rec.rank_of(j)
                if ri == rj:
                    agree += 0.5
                elif (ri < rj) == (gold[i] > gold[j]):
                    agree += 1.0
    return agree / total if total else float("nan")
