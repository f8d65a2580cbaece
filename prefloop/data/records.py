"""The record types of preference data: one dataclass per kind of feedback.

Every stage speaks these records: the feedback server exports them, the readers in
`prefloop.data.io` produce them from JSONL / Parquet / HF datasets (TRL's formats
included), and the training loops consume them.

`prompt` is either a plain string or a list of chat messages
(``[{"role": "user", "content": "..."}]``); a response is a plain string (the
assistant's turn). Chat templates are applied later, at tokenization time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]
PromptText = str | list[Message]


@dataclass
class Prompt:
    """A prompt alone: input for generation, online RL and evaluation."""

    prompt: PromptText
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Demonstration:
    """A prompt with a good response: SFT data (also produced by annotators' edits)."""

    prompt: PromptText
    response: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferencePair:
    """Two responses to one prompt, `chosen` preferred to `rejected`.

    `margin` is the optional strength of preference (Llama 2's margin loss): larger
    means the annotator was more certain. None means "not given".
    """

    prompt: PromptText
    chosen: str
    rejected: str
    margin: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RankedResponses:
    """K responses to one prompt, ordered best to worst.

    `ranks[i]` is the rank of `responses[i]` (0 = best); equal ranks are ties. When
    `ranks` is None the list order is the ranking with no ties.
    """

    prompt: PromptText
    responses: list[str]
    ranks: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def rank_of(self, i: int) -> int:
        return i if self.ranks is None else self.ranks[i]


@dataclass
class BinaryFeedback:
    """One completion marked desirable or not (thumbs up / down): KTO data."""

    prompt: PromptText
    completion: str
    desirable: bool
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rating:
    """One response with a numeric score (e.g. a 1-7 Likert rating)."""

    prompt: PromptText
    response: str
    score: float
    meta: dict[str, Any] = field(default_factory=dict)


Record = Prompt | Demonstration | PreferencePair | RankedResponses | BinaryFeedback | Rating

RECORD_TYPES: dict[str, type] = {
    "prompt": Prompt,
    "demonstration": Demonstration,
    "pairwise": PreferencePair,
    "ranked": RankedResponses,
    "binary": BinaryFeedback,
    "rating": Rating,
}


def record_to_dict(record: Record) -> dict[str, Any]:
    """A JSON-ready dict of a record; empty `meta` and unset optional fields are dropped."""
    out = asdict(record)
    if not out.get("meta"):
        out.pop("meta", None)
    for optional in ("margin", "ranks"):
        if optional in out and out[optional] is None:
            out.pop(optional)
    return out
