"""The reward seam: anything that scores (prompt, completion) pairs.

Reward models, ensembles, gold judges and AI judges all implement `RewardFn`, so the online
loops, best-of-N and evaluation take any of them.

Optional keywords: a reward may also accept ``meta`` (one dict per completion: the prompt
record's `meta`, e.g. ``{"unsafe": true}`` for Llama 2's safety gating) and ``batch`` (a label
for error messages, e.g. the training step). `call_reward` passes each only to rewards whose
signature has it, and checks what comes back.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from prefloop.data.records import PromptText

__all__ = ["RewardError", "RewardFn", "call_reward", "reward_name"]


@runtime_checkable
class RewardFn(Protocol):
    """Scores completions: one float per (prompt, completion), higher is better."""

    def __call__(self, prompts: Sequence[PromptText], completions: Sequence[str]) -> list[float]: ...


class RewardError(ValueError):
    """A reward that failed or returned unusable scores; the message names the reward and the batch."""


def reward_name(fn: Any) -> str:
    """A reward's name for messages: its `name` attribute, else its qualified name."""
    name = getattr(fn, "name", None)
    if isinstance(name, str) and name:
        return name
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    module = getattr(target, "__module__", "") or ""
    return f"{module}:{getattr(target, '__qualname__', repr(fn))}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _accepted(fn: Any, candidates: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments among `candidates` (None values dropped) that `fn` can take."""
    given = {k: v for k, v in candidates.items() if v is not None}
    if not given:
        return {}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return given
    return {k: v for k, v in given.items() if k in params}


def call_reward(
    fn: Any,
    prompts: Sequence[PromptText],
    completions: Sequence[str],
    *,
    meta: Sequence[Mapping[str, Any]] | None = None,
    batch: Any = None,
    name: str | None = None,
) -> list[float]:
    """``fn(prompts, completions)``, checked: one finite float per completion, or a `RewardError`.

    The error is one line naming the reward (``name`` or `reward_name`) and the batch:
    ``reward 'mymod:score' on batch 7: returned 3 scores for 4 completions``. A `RewardError` from
    a reward nested inside ``fn`` (a member of a sum, say) passes through unchanged, so it names
    the member that failed.
    """
    label = name or reward_name(fn)
    where = f"reward {label!r}" + (f" on batch {batch}" if batch is not None else "")
    if len(prompts) != len(completions):
        raise RewardError(f"{where}: {len(prompts)} prompts but {len(completions)} completions")
    if meta is not None and len(meta) != len(completions):
        raise RewardError(f"{where}: {len(meta)} meta records but {len(completions)} completions")
    try:
        raw = fn(prompts, completions, **_accepted(fn, {"meta": meta, "batch": batch}))
    except RewardError:
        raise
    except Exception as exc:  # any failure of user code becomes one line naming the reward
        raise RewardError(f"{where}: raised {type(exc).__name__}: {_one_line(exc)}") from exc
    try:
        scores = [float(s) for s in raw]
    except (TypeError, ValueError) as exc:
        raise RewardError(
            f"{where}: expected a list of numbers, got {type(raw).__name__} ({_one_line(exc)})"
        ) from None
    if len(scores) != len(completions):
        raise RewardError(f"{where}: returned {len(scores)} scores for {len(completions)} completions")
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise RewardError(
            f"{where}: returned {scores[bad[0]]} for completion {bad[0]} of {len(scores)}{more}"
        )
    return scores
