"""The reward seam: anything that scores (prompt, completion) pairs.

Reward models, ensembles, gold judges and AI judges all implement `RewardFn`, so the online
loops, best-of-N and evaluation take any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prefloop.data.records import PromptText


@runtime_checkable
class RewardFn(Protocol):
    """Scores completions: one float per (prompt, completion), higher is better."""

    def __call__(self, prompts: Sequence[PromptText], completions: Sequence[str]) -> list[float]: ...
