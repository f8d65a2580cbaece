"""Request bodies of the feedback REST API (pydantic v2), validated before anything is written.

Shape checks live here (types, ranges that do not depend on the database, unknown fields are
errors). Checks that need the item - do the response ids belong to it, does a ranking name
every response exactly once, is a rating inside the campaign's scale - live in
`validate_submission`, which is pure and returns a clear message or None.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

FeedbackType = Literal["pairwise", "ranking", "rating", "binary", "critique", "edit"]
Strength = Literal["significantly_better", "better", "slightly_better", "negligibly_better"]
Choice = Literal["a", "b", "tie", "both_bad"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class UserIn(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/]+$")
    role: Literal["admin", "annotator"] = "annotator"
    password: str | None = Field(default=None, min_length=8, max_length=1000)


class CampaignIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    feedback_types: list[FeedbackType] = Field(min_length=1)
    overlap: int = Field(default=1, ge=1, le=1000)
    anonymous: bool = True
    rating_scale: tuple[float, float] = (1.0, 7.0)
    instructions: str = Field(default="", max_length=100_000)

    @field_validator("feedback_types")
    @classmethod
    def _unique_types(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("feedback_types lists a type twice")
        return v

    @field_validator("rating_scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"rating_scale must be [lo, hi] with lo < hi, got {list(v)}")
        return v


class CampaignPatch(_Strict):
    """Fields of a campaign an admin may change (PATCH /api/campaigns/{cid}); unset = unchanged."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    feedback_types: list[FeedbackType] | None = Field(default=None, min_length=1)
    overlap: int | None = Field(default=None, ge=1, le=1000)
    anonymous: bool | None = None
    rating_scale: tuple[float, float] | None = None
    instructions: str | None = Field(default=None, max_length=100_000)

    @field_validator("feedback_types")
    @classmethod
    def _unique_types(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else CampaignIn._unique_types(v)

    @field_validator("rating_scale")
    @classmethod
    def _scale(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return v if v is None else CampaignIn._scale(v)

    @model_validator(mode="after")
    def _no_nulls(self) -> CampaignPatch:
        for key in self.model_fields_set:
            if getattr(self, key) is None:
                raise ValueError(f"{key}: null is not a value; leave the field out to keep it")
        return self


class ReviewIn(_Strict):
    review: Literal["accepted", "rejected"] | None
    """accepted | rejected | null (back to unreviewed)"""


class NoteIn(_Strict):
    text: str = Field(min_length=1, max_length=10_000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v.strip()


class AnnotatorsIn(_Strict):
    names: list[str] = Field(min_length=1, max_length=10_000)

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or len(name) > 200 or any(c.isspace() or c == "/" for c in name):
                raise ValueError(f"invalid annotator name {name!r} (1-200 chars, no spaces or '/')")
        if len(set(v)) != len(v):
            raise ValueError("names lists an annotator twice")
        return v


class Message(_Strict):
    role: str = Field(min_length=1, max_length=50)
    content: str


class ResponseIn(_Strict):
    text: str = Field(max_length=1_000_000)
    model: str | None = Field(default=None, max_length=500)
    checkpoint: str | None = Field(default=None, max_length=1000)


class ItemIn(_Strict):
    prompt: str | list[Message]
    responses: list[ResponseIn] = Field(min_length=1, max_length=64)
    gold: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _gold(self) -> ItemIn:
        if self.gold is not None:
            problem = validate_gold(self.gold, len(self.responses))
            if problem:
                raise ValueError(problem)
        return self


class ItemsIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=10_000)


# Response ids and values are strict (no "3" for 3, no true for 1); dict keys are parsed from
# JSON's string keys.
Score = StrictInt | StrictFloat


class Pairwise(_Strict):
    a: StrictInt
    b: StrictInt
    choice: Choice
    strength: Strength | None = None

    @model_validator(mode="after")
    def _check(self) -> Pairwise:
        if self.a == self.b:
            raise ValueError("pairwise: a and b must be two different responses")
        if self.strength is not None and self.choice in ("tie", "both_bad"):
            raise ValueError(f"pairwise: strength is only given with choice 'a' or 'b', not {self.choice!r}")
        return self


class Edit(_Strict):
    response_id: StrictInt
    text: str = Field(min_length=1, max_length=1_000_000)


class SubmitIn(_Strict):
    idempotency_key: str = Field(min_length=1, max_length=200)
    pairwise: Pairwise | None = None
    ranking: list[list[StrictInt]] | None = None
    ratings: dict[int, Score] | None = None
    thumbs: dict[int, StrictBool] | None = None
    critique: str | None = Field(default=None, max_length=100_000)
    edit: Edit | None = None

    def feedback(self) -> dict[str, Any]:
        """The stored payload: the body minus the idempotency key and the unset parts."""
        return self.model_dump(mode="json", exclude={"idempotency_key"}, exclude_none=True)


TYPE_OF_FIELD = {
    "pairwise": "pairwise",
    "ranking": "ranking",
    "ratings": "rating",
    "thumbs": "binary",
    "critique": "critique",
    "edit": "edit",
}


def validate_gold(gold: dict[str, Any], n_responses: int) -> str | None:
    """Gold answers use response positions (0-based): {"ranking": [[pos, ...], ...]} or {"chosen": pos}."""
    allowed = {"ranking", "chosen"}
    unknown = set(gold) - allowed
    if unknown or not gold:
        return f"gold: expected keys {sorted(allowed)}, got {sorted(gold)}"
    if "chosen" in gold:
        pos = gold["chosen"]
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < n_responses:
            return f"gold.chosen: {pos!r} is not a response position in 0..{n_responses - 1}"
    if "ranking" in gold:
        ranking = gold["ranking"]
        if not isinstance(ranking, list) or not all(isinstance(g, list) and g for g in ranking):
            return "gold.ranking: expected a list of non-empty groups of response positions"
        flat = [p for g in ranking for p in g]
        if sorted(flat) != list(range(n_responses)) or not all(isinstance(p, int) for p in flat):
            return f"gold.ranking: must contain every response position 0..{n_responses - 1} exactly once, got {flat}"
    return None


def validate_submission(
    body: SubmitIn, response_ids: list[int], feedback_types: list[str], scale: tuple[float, float]
) -> str | None:
    """A clear message for the first problem of `body` against its item, or None when valid."""
    ids = set(response_ids)
    given = [f for f in TYPE_OF_FIELD if getattr(body, f) is not None]
    if not given:
        return f"empty submission: give at least one of {[k for k, t in TYPE_OF_FIELD.items() if t in feedback_types]}"
    for f in given:
        if TYPE_OF_FIELD[f] not in feedback_types:
            return f"{f}: feedback type {TYPE_OF_FIELD[f]!r} is not enabled in this campaign (enabled: {feedback_types})"

    def unknown(field: str, values: list[int]) -> str | None:
        bad = sorted({v for v in values if v not in ids})
        return f"{field}: unknown response id(s) {bad} for this item (ids: {sorted(ids)})" if bad else None

    if body.pairwise is not None and (problem := unknown("pairwise", [body.pairwise.a, body.pairwise.b])):
        return problem
    if body.ranking is not None:
        flat = [r for group in body.ranking for r in group]
        if any(not group for group in body.ranking):
            return "ranking: empty group; each group lists one or more response ids (a group of several is a tie)"
        if problem := unknown("ranking", flat):
            return problem
        dup = sorted({r for r in flat if flat.count(r) > 1})
        if dup:
            return f"ranking: response id(s) {dup} appear more than once"
        missing = sorted(ids - set(flat))
        if missing:
            return (
                f"ranking: missing response id(s) {missing}; a ranking must place every response exactly once"
            )
    if body.ratings is not None:
        if not body.ratings:
            return "ratings: empty; give {response_id: score}"
        if problem := unknown("ratings", list(body.ratings)):
            return problem
        lo, hi = scale
        for rid, score in body.ratings.items():
            if not lo <= score <= hi or score != score:
                return (
                    f"ratings: score {score} for response {rid} is outside the rating scale [{lo:g}, {hi:g}]"
                )
    if body.thumbs is not None:
        if not body.thumbs:
            return "thumbs: empty; give {response_id: true|false}"
        if problem := unknown("thumbs", list(body.thumbs)):
            return problem
    if body.critique is not None and not body.critique.strip():
        return "critique: empty text"
    if body.edit is not None and body.edit.response_id not in ids:
        return f"edit: unknown response id {body.edit.response_id} for this item (ids: {sorted(ids)})"
    return None
