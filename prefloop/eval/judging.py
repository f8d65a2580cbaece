"""Judges for `prefloop eval`: who decides whether response a beats response b.

`--judge` takes
    gold:NAME | rm:DIR | reward:DIR | MODULE:FUNCTION | ...   any `--reward` form (a scalar scorer;
                          the higher score wins, equal scores tie)
    ai:MODEL              an AI judge (prefloop.teachers.judge): a causal LM (default, tiny, a path) or an
                          OpenAI-compatible URL, asked in both orders; cached in outputs/eval/
    campaign              people, through a feedback campaign (see `prefloop eval winrate --help`)

`PairJudge.outcomes(prompts, a, b)` returns per pair 1 (a wins), 0.5 (tie), 0 (b wins) or None
(the judge abstained; such pairs are left out of rates and counted apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from prefloop.eval.stats import outcomes_from_scores


class PairJudge(Protocol):
    name: str

    def outcomes(self, prompts: Sequence[Any], a: Sequence[str], b: Sequence[str]) -> list[float | None]: ...


class ScoreJudge:
    """A scalar reward as a pairwise judge: the higher score wins."""

    def __init__(self, name: str, reward: Any):
        self.name, self.reward = name, reward

    def scores(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        return [float(s) for s in self.reward(list(prompts), list(completions))]

    def outcomes(self, prompts: Sequence[Any], a: Sequence[str], b: Sequence[str]) -> list[float | None]:
        return list(outcomes_from_scores(self.scores(prompts, a), self.scores(prompts, b)))


VERDICT_VALUE = {"a": 1.0, "b": 0.0, "tie": 0.5}  # a "skip" has no value: None


class TeacherJudge:
    """A `Teacher` (AI judge, simulated annotator) as a pairwise judge; skips become None."""

    def __init__(self, teacher: Any):
        self.name, self.teacher = teacher.name, teacher

    def outcomes(self, prompts: Sequence[Any], a: Sequence[str], b: Sequence[str]) -> list[float | None]:
        from prefloop.teachers.base import compare_many

        prefs = compare_many(self.teacher, list(zip(prompts, a, b, strict=True)))
        return [VERDICT_VALUE.get(p.which) for p in prefs]


def make_judge(spec: str, device: str = "auto") -> PairJudge:
    """The judge a `--judge` value names (see the module notes)."""
    if spec.startswith("ai:"):
        from prefloop.teachers.factory import TeacherOptions, make_teacher

        # ai:default, ai:tiny, ai:PATH or ai:http://host:port/v1 (an OpenAI-compatible endpoint);
        # answers are cached next to the results, so a rerun costs nothing.
        options = TeacherOptions(
            teacher="ai",
            judge=spec[3:],
            judge_cache="outputs/eval/judge_cache.sqlite",
            device="cpu" if device == "auto" else device,
        )
        Path(options.judge_cache).parent.mkdir(parents=True, exist_ok=True)
        return TeacherJudge(make_teacher(options))
    if spec == "campaign":
        raise ValueError("--judge campaign is handled by `prefloop eval winrate` itself (it needs --db)")
    from prefloop.rewards.spec import load_reward

    reward_spec = "rm:" + spec[len("reward:") :] if spec.startswith("reward:") else spec
    return ScoreJudge(spec, load_reward(reward_spec, device=device))
