"""What happens to reward scores before the RL loss: penalties, running normalisation, clipping.

Order, per batch of completions (scores from the `RewardFn`):

    1. penalties   r ← r − missing_eos_penalty · [finish_reason == "length"]
                         − length_penalty · max(0, num_tokens − length_target)
    2. normalise   (optional) update running statistics with this batch's r, then
                   r ← (r − mean) / sqrt(var + eps)   (Welford / Chan et al.'s parallel update;
                   var is the Bessel-corrected variance of every reward seen so far, 1 while
                   fewer than 2 were seen). ``normalize_shift=False`` only divides.
    3. clip        (optional) r ← clip(r, −clip, clip), so the bound is in normalised units
                   when normalisation is on.

The missing-EOS penalty is TRL's `missing_eos_penalty`; running normalisation is the "reward
scaling" of the PPO implementation-details literature (Engstrom et al. 2020; Huang et al. 2024,
"The N+ Implementation Details of RLHF with PPO"). The running statistics are plain floats with
``state_dict`` / ``load_state_dict``, so a resumed run normalises exactly as an uninterrupted one.
Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefloop.generation.base import Completion

__all__ = ["RewardShaper", "RewardShaping", "RunningMoments"]


@dataclass
class RewardShaping:
    """Penalties, normalisation and clipping applied to reward scores (see `prefloop.rewards.shaping`)."""

    missing_eos_penalty: float = 0.0
    """Subtracted from the reward of a response cut at the token limit (no end-of-turn token); 0 = off."""
    length_penalty: float = 0.0
    """Subtracted per response token beyond length_target; 0 = off."""
    length_target: int = 0
    """Responses up to this many tokens get no length penalty."""
    normalize: bool = False
    """Running normalisation: (r - running mean) / running std over every reward seen so far."""
    normalize_shift: bool = True
    """With normalize: subtract the running mean (False: only divide by the running std)."""
    normalize_eps: float = 1e-8
    """Added to the running variance before the square root."""
    clip: float | None = None
    """Clip rewards to [-clip, clip] after normalisation; None = off."""

    def __post_init__(self) -> None:
        if self.missing_eos_penalty < 0 or self.length_penalty < 0:
            raise ValueError("missing_eos_penalty and length_penalty must be >= 0 (they are subtracted)")
        if self.length_target < 0:
            raise ValueError(f"length_target must be >= 0, got {self.length_target}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 (or None), got {self.clip}")


class RunningMoments:
    """Count, mean and sum of squared deviations of every value seen (exact batched Welford)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: Sequence[float]) -> None:
        n = len(values)
        if n == 0:
            return
        mean_b = sum(values) / n
        m2_b = sum((v - mean_b) ** 2 for v in values)
        total = self.count + n
        delta = mean_b - self.mean
        self.mean += delta * n / total
        self.m2 += m2_b + delta * delta * self.count * n / total
        self.count = total

    @property
    def var(self) -> float:
        """Bessel-corrected variance; 1.0 while fewer than two values were seen."""
        return self.m2 / (self.count - 1) if self.count > 1 else 1.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


class RewardShaper:
    """Applies a `RewardShaping` batch after batch (keeps the running statistics)."""

    def __init__(self, cfg: RewardShaping | None = None):
        self.cfg = cfg or RewardShaping()
        self.moments = RunningMoments()

    def __call__(
        self, scores: Sequence[float], completions: Sequence[Completion]
    ) -> tuple[list[float], dict[str, float]]:
        """Shaped rewards and metrics (reward/raw_mean, reward/penalty_mean, reward/missing_eos_fraction,
        reward/clip_fraction, reward/running_mean, reward/running_std, reward/shaped_mean)."""
        if len(scores) != len(completions):
            raise ValueError(f"{len(scores)} scores for {len(completions)} completions")
        cfg = self.cfg
        n = max(len(scores), 1)
        missing = [not c.stopped for c in completions]
        penalties = [
            cfg.missing_eos_penalty * m + cfg.length_penalty * max(0, c.num_tokens - cfg.length_target)
            for m, c in zip(missing, completions)
        ]
        rewards = [s - p for s, p in zip(scores, penalties)]
        if cfg.normalize:
            self.moments.update(rewards)
            shift = self.moments.mean if cfg.normalize_shift else 0.0
            scale = 1.0 / math.sqrt(self.moments.var + cfg.normalize_eps)
            rewards = [(r - shift) * scale for r in rewards]
        clipped = 0
        if cfg.clip is not None:
            bounded = [min(max(r, -cfg.clip), cfg.clip) for r in rewards]
            clipped = sum(b != r for b, r in zip(bounded, rewards))
            rewards = bounded
        metrics = {
            "reward/raw_mean": sum(scores) / n,
            "reward/penalty_mean": sum(penalties) / n,
            "reward/missing_eos_fraction": sum(missing) / n,
            "reward/clip_fraction": clipped / n,
            "reward/shaped_mean": sum(rewards) / n,
        }
        if cfg.normalize:
            metrics["reward/running_mean"] = self.moments.mean
            metrics["reward/running_std"] = self.moments.std
        return rewards, metrics

    def state_dict(self) -> dict[str, Any]:
        return {"moments": self.moments.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.moments.load_state_dict(state["moments"])
