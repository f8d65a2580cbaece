"""The teacher seam: anyone who says which response is better — a person, a simulation, an AI judge.

Torch-free and numpy-free on purpose: the feedback server, the reward code, the training loops
and the CLI all program against these names, and none of them has to import another room to do
it (DESIGN principle 7). Implementations live next door: `simulated.py` (B-Pref noise models
over a gold scorer), `judge.py` (an LLM asked in both orders, locally or over HTTP),
`people.py` (annotators through the feedback server's REST API).

`Preference` — one answer to "is a or b better for this prompt?":

    which        "a" | "b" | "tie" | "skip" (the teacher abstained: no label)
    probability  P(a ≻ b) as the teacher sees it, in [0, 1] — a soft label; None when the
                 teacher gives only a verdict (a person). A tie from a model carries ~0.5.
    strength     how sure the verdict is, in [0, 1]: |2·probability − 1| for model teachers,
                 the chosen strength level for people; None when not given.
    meta         provenance: annotator name, gold scores, both-order probabilities, cache hit ...

`Teacher` — the protocol:

    name                                 who labelled ("sim:mistake-0.1", "ai:smollm2", "alice")
    compare(prompt, a, b) -> Preference  one pairwise judgment
    rank(prompt, responses) -> ranks | None
                                         ranks[i] = rank of responses[i], 0 = best, ties share
                                         a rank (the convention of `RankedResponses`); None =
                                         the teacher skipped the item
    rate(prompt, response) -> float      a score on the teacher's own scale (documented by each)
    judge_binary(prompt, response) -> bool | None
                                         thumbs up / down (KTO data); None = skipped

`compare_many(teacher, triples)` uses a teacher's batched `compare_batch` when it has one
(the AI judge does), else loops over `compare`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from prefloop.data.records import PreferencePair, PromptText

Verdict = Literal["a", "b", "tie", "skip"]
VERDICTS: tuple[str, ...] = ("a", "b", "tie", "skip")

__all__ = [
    "VERDICTS",
    "Preference",
    "Teacher",
    "Verdict",
    "compare_many",
    "copeland_ranks",
    "order_to_ranks",
    "preference_from_probability",
]


@dataclass(frozen=True)
class Preference:
    """One pairwise judgment (see the module docstring for each field's meaning)."""

    which: Verdict
    probability: float | None = None
    strength: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.which not in VERDICTS:
            raise ValueError(f"which must be one of {VERDICTS}, got {self.which!r}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")

    @property
    def skipped(self) -> bool:
        return self.which == "skip"

    @property
    def is_tie(self) -> bool:
        return self.which == "tie"

    def swapped(self) -> Preference:
        """The same judgment with a and b exchanged."""
        which = {"a": "b", "b": "a"}.get(self.which, self.which)
        p = None if self.probability is None else 1.0 - self.probability
        return Preference(which, p, self.strength, dict(self.meta))  # type: ignore[arg-type]

    def to_pair(self, prompt: PromptText, a: str, b: str) -> PreferencePair | None:
        """A chosen/rejected record for training; None for a tie or a skip.

        meta keeps the soft label as "p_chosen" (P(chosen ≻ rejected)) when there is one."""
        if self.which not in ("a", "b"):
            return None
        chosen, rejected = (a, b) if self.which == "a" else (b, a)
        meta = dict(self.meta)
        if self.probability is not None:
            meta["p_chosen"] = self.probability if self.which == "a" else 1.0 - self.probability
        return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, meta=meta)


def preference_from_probability(p: float, tie_margin: float = 0.0, **meta: Any) -> Preference:
    """The verdict of a soft label: "a" if p > 1/2 + tie_margin, "b" if p < 1/2 − tie_margin, else "tie"."""
    which: Verdict = "a" if p > 0.5 + tie_margin else "b" if p < 0.5 - tie_margin else "tie"
    return Preference(which, p, abs(2.0 * p - 1.0), meta)


@runtime_checkable
class Teacher(Protocol):
    """Gives feedback on responses: pairwise choices, rankings, ratings and thumbs."""

    name: str

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference: ...

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None: ...

    def rate(self, prompt: PromptText, response: str) -> float: ...

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None: ...


def compare_many(teacher: Teacher, triples: Sequence[tuple[PromptText, str, str]]) -> list[Preference]:
    """`teacher.compare` over many (prompt, a, b); batched when the teacher has `compare_batch`."""
    batch = getattr(teacher, "compare_batch", None)
    if batch is not None:
        return list(batch(triples))
    return [teacher.compare(p, a, b) for p, a, b in triples]


def order_to_ranks(scores: Sequence[float]) -> list[int]:
    """Dense ranks from scores, higher score = better = lower rank; equal scores tie.

    >>> order_to_ranks([0.1, 0.9, 0.1])
    [1, 0, 1]
    """
    distinct = sorted(set(scores), reverse=True)
    position = {s: r for r, s in enumerate(distinct)}
    return [position[s] for s in scores]


def copeland_ranks(teacher: Teacher, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
    """Rank K responses by pairwise comparisons: Copeland score = wins + ½·ties over all C(K, 2) pairs.

    For teachers that only compare (an AI judge). Skipped pairs count for neither side; when
    every pair is skipped the ranking is skipped (None)."""
    k = len(responses)
    if k == 0:
        raise ValueError("rank needs at least one response")
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    prefs = compare_many(teacher, [(prompt, responses[i], responses[j]) for i, j in pairs])
    if pairs and all(p.skipped for p in prefs):
        return None
    score = [0.0] * k
    for (i, j), pref in zip(pairs, prefs):
        if pref.which == "a":
            score[i] += 1.0
        elif pref.which == "b":
            score[j] += 1.0
        elif pref.which == "tie":
            score[i] += 0.5
            score[j] += 0.5
    return order_to_ranks(score)
