"""A reward function as a teacher: P(a ≻ b) = σ((r(x, a) − r(x, b)) / temperature).

So a reward model (or any `RewardFn`, a gold scorer included) can label pairs wherever a teacher
is expected — online DPO, Nash-MD, `prefloop label`. The verdict is the soft label's side (a tie
only on exactly equal rewards); `rank` sorts by reward, `rate` is the reward itself,
`judge_binary` is r > threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from prefloop.data.records import PromptText
from prefloop.teachers.base import Preference, order_to_ranks, preference_from_probability


class RewardTeacher:
    """A `Teacher` from a `RewardFn` (see the module docstring)."""

    rating_range = (-1.0, 1.0)

    def __init__(self, reward, temperature: float = 1.0, threshold: float = 0.0, name: str = "reward"):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.reward, self.temperature, self.threshold, self.name = reward, temperature, threshold, name

    def compare_batch(self, triples: Sequence[tuple[PromptText, str, str]]) -> list[Preference]:
        prompts = [p for p, _, _ in triples]
        ra = self.reward(prompts, [a for _, a, _ in triples])
        rb = self.reward(prompts, [b for _, _, b in triples])
        out = []
        for x, y in zip(ra, rb):
            z = (x - y) / self.temperature
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            out.append(preference_from_probability(p, annotator=self.name, reward_a=x, reward_b=y))
        return out

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference:
        return self.compare_batch([(prompt, a, b)])[0]

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
        return order_to_ranks(self.reward([prompt] * len(responses), list(responses)))

    def rate(self, prompt: PromptText, response: str) -> float:
        return float(self.reward([prompt], [response])[0])

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None:
        return self.rate(prompt, response) > self.threshold
