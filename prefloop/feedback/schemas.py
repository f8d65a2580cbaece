"""Request bodies of the feedback REST API (pydantic v2), validated before anything is written.

Shape checks live here (types, ranges that do not depend on the database, unknown fields are
errors). Checks that need the item - do the response ids belong to it, does a ranking name
every response exactly once, is a rating inside the campaign's scale - live in
`validate_submission`, which is pure and returns a clear message or None.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
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
Choice = Literal["a", "b", "tie", "both_bad", "cant_tell"]
"""a / b better, a tie ("equal"), both bad (a tie), or "can't tell": judged, but no outcome
(left out of agreement, leaderboards and exports; the control loop drops the pair)."""


INT64_MAX = 2**63 - 1
"""The largest id either database stores; larger numbers are a 4xx, never a query."""
NAME_MAX, PASSWORD_MIN, PASSWORD_MAX = 200, 8, 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------
# Rules shared by the API and the CLI (one function each, so the two cannot drift apart)


def user_name_problem(name: Any) -> str | None:
    """Why `name` cannot be a user name, or None. Names are compared case-insensitively."""
    if not isinstance(name, str) or not name:
        return "user name: empty"
    if len(name) > NAME_MAX:
        return f"user name: longer than {NAME_MAX} characters"
    if any(c.isspace() or c == "/" or not c.isprintable() for c in name):
        return f"user name {name!r}: no spaces, '/' or control characters allowed"
    return None


def password_problem(password: Any) -> str | None:
    """Why `password` cannot be a password, or None."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        return f"password: at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"password: at most {PASSWORD_MAX} characters"
    return None


def _checked(problem_of: Any) -> Any:
    def check(value: Any) -> Any:
        problem = problem_of(value)
        if problem:
            raise ValueError(problem)
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("empty (or only whitespace)")
    return value


UserName = Annotated[str, AfterValidator(_checked(user_name_problem))]
Password = Annotated[str, AfterValidator(_checked(password_problem))]
NonBlank = Annotated[str, AfterValidator(_not_blank)]


class LoginIn(_Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class UserIn(_Strict):
    name: UserName
    role: Literal["admin", "annotator"] = "annotator"
    password: Password | None = None


class CampaignIn(_Strict):
    name: NonBlank = Field(max_length=200)
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

    name: NonBlank | None = Field(default=None, max_length=200)
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
            if problem := user_name_problem(name):
                raise ValueError(problem)
        if len({n.lower() for n in v}) != len(v):
            raise ValueError("names lists an annotator twice (names are case-insensitive)")
        return v


class Message(_Strict):
    role: str = Field(min_length=1, max_length=50)
    content: str


class ResponseIn(_Strict):
    text: str = Field(default="", max_length=1_000_000)
    """The response; with a `media_id`, an optional caption shown under the clip."""
    model: str | None = Field(default=None, max_length=500)
    checkpoint: str | None = Field(default=None, max_length=1000)
    media_id: int | None = Field(default=None, ge=1, le=INT64_MAX)
    """A clip of this campaign (`POST /api/campaigns/{cid}/media`) shown as the response."""

    @model_validator(mode="after")
    def _text_or_media(self) -> ResponseIn:
        if self.media_id is None and not self.text.strip():
            raise ValueError("text: empty (or only whitespace); give a text or a media_id")
        return self


class ItemIn(_Strict):
    prompt: str | list[Message]
    responses: list[ResponseIn] = Field(min_length=1, max_length=64)
    gold: dict[str, Any] | None = None
    priority: float | None = Field(default=None, allow_inf_nan=False)
    """Optional: pending tasks are served highest priority first (items without one come last)."""

    @model_validator(mode="after")
    def _gold(self) -> ItemIn:
        if isinstance(self.prompt, str) and not self.prompt.strip():
            raise ValueError("prompt: empty (or only whitespace)")
        if isinstance(self.prompt, list) and not any(m.content.strip() for m in self.prompt):
            raise ValueError("prompt: no message with text")
        if self.gold is not None:
            problem = validate_gold(self.gold, len(self.responses))
            if problem:
                raise ValueError(problem)
        return self


class PrioritiesIn(_Strict):
    """PATCH /api/campaigns/{cid}/items/priority: {item id: priority or null}."""

    priorities: dict[int, float | None] = Field(min_length=1, max_length=100_000)

    @field_validator("priorities")
    @classmethod
    def _finite(cls, v: dict[int, float | None]) -> dict[int, float | None]:
        for item_id, p in v.items():
            if p is not None and (p != p or p in (float("inf"), float("-inf"))):
                raise ValueError(f"priority of item {item_id} must be a finite number or null")
        return v


class ItemsIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=10_000)


# Response ids and values are strict (no "3" for 3, no true for 1); dict keys are parsed from
# JSON's string keys, which must be written canonically ("2", not "+2" or "02"), so two keys
# can never name one response.
Score = StrictInt | StrictFloat
_CANONICAL_ID = re.compile(r"(0|[1-9][0-9]{0,18})")


def _canonical_keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and not _CANONICAL_ID.fullmatch(key):
                raise ValueError(f'key {key!r} is not a response id (write ids as plain digits, e.g. "2")')
    return value


def _finite_scores(value: Any) -> Any:
    for key, score in (value or {}).items():
        if isinstance(score, float) and not math.isfinite(score):
            raise ValueError(f"score for {key} is not a finite number")
    return value


ResponseId = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]


class Pairwise(_Strict):
    a: ResponseId
    b: ResponseId
    choice: Choice
    strength: Strength | None = None

    @model_validator(mode="after")
    def _check(self) -> Pairwise:
        if self.a == self.b:
            raise ValueError("pairwise: a and b must be two different responses")
        if self.strength is not None and self.choice not in ("a", "b"):
            raise ValueError(f"pairwise: strength is only given with choice 'a' or 'b', not {self.choice!r}")
        return self


class Edit(_Strict):
    response_id: ResponseId
    text: str = Field(min_length=1, max_length=1_000_000)


class SubmitIn(_Strict):
    idempotency_key: str = Field(min_length=1, max_length=200)
    pairwise: Pairwise | None = None
    ranking: list[list[ResponseId]] | None = Field(default=None, max_length=64)
    ratings: Annotated[
        dict[int, Score] | None, BeforeValidator(_canonical_keys), AfterValidator(_finite_scores)
    ] = None
    thumbs: Annotated[dict[int, StrictBool] | None, BeforeValidator(_canonical_keys)] = None
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
