"""Turn one raw row (a dict from JSONL / Parquet / HF datasets) into a validated record.

Every error is a `DataError` whose message starts with the row's location and names
the field: ``data/prefs.jsonl:17: field 'rejected': missing``. The readers in
`prefloop.data.io` supply the location; this module knows the formats.

Accepted formats (TRL's standard and conversational forms as they are, plus ours):

===============================================  =================
keys                                             record
===============================================  =================
prompt, chosen, rejected [, margin]              PreferencePair
chosen, rejected (implicit prompt: shared start) PreferencePair
prompt, responses [, ranks]                      RankedResponses
prompt, completion, label | desirable            BinaryFeedback
prompt, response | completion, score             Rating
messages                                         Demonstration
prompt, completion | response                    Demonstration
prompt                                           Prompt
===============================================  =================

In the conversational forms `prompt` is a message list and each response is a list
holding the assistant turn (or the whole conversation, whose prompt part is removed).
`meta` (an object, or a JSON string of one as stored in Parquet) is optional; other
unknown keys are kept in `meta` so that extra columns of a TRL dataset do not break it.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable
from typing import Any

from prefloop.data.records import (
    BinaryFeedback,
    Demonstration,
    Message,
    PreferencePair,
    Prompt,
    PromptText,
    RankedResponses,
    Rating,
    Record,
)

KINDS = ("prompt", "demonstration", "pairwise", "ranked", "binary", "rating")

# Every key each kind understands (besides these, keys go to `meta`).
KIND_KEYS: dict[str, frozenset[str]] = {
    "pairwise": frozenset({"prompt", "chosen", "rejected", "margin", "meta"}),
    "ranked": frozenset({"prompt", "responses", "ranks", "meta"}),
    "binary": frozenset({"prompt", "completion", "label", "desirable", "meta"}),
    "rating": frozenset({"prompt", "response", "completion", "score", "meta"}),
    "demonstration": frozenset({"prompt", "response", "completion", "messages", "meta"}),
    "prompt": frozenset({"prompt", "meta"}),
}

EXPECTED_FORMATS = (
    "prompt+chosen+rejected (pairwise), prompt+responses[+ranks] (ranked), "
    "prompt+completion+label or prompt+completion+desirable (binary), "
    "prompt+response+score (rating), messages or prompt+completion or prompt+response "
    "(demonstration), prompt (prompt)"
)


class DataError(ValueError):
    """Bad input data; the message names the file, the line (or row) and the field."""


def fail(where: str, field: str | None, msg: str) -> DataError:
    """Build (not raise) a DataError with the standard 'WHERE: field 'F': MSG' text."""
    prefix = f"{where}: " if where else ""
    return DataError(f"{prefix}field '{field}': {msg}" if field else f"{prefix}{msg}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------- field checkers


def check_messages(value: Any, where: str, field: str) -> list[Message]:
    """A non-empty list of {"role": str, "content": str} dicts.

    Keys whose value is None are dropped: Parquet gives every message the union of
    the keys seen in the column, with nulls where a message lacked one.
    """
    if not isinstance(value, (list, tuple)) or not value:
        raise fail(where, field, "expected a non-empty list of chat messages")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise fail(where, field, f"message {i}: expected an object, got {_type_name(msg)}")
        msg = {k: v for k, v in msg.items() if v is not None}
        for key in ("role", "content"):
            if key not in msg:
                raise fail(where, field, f"message {i}: missing '{key}'")
            if not isinstance(msg[key], str):
                raise fail(where, field, f"message {i}: '{key}' must be a string, got {_type_name(msg[key])}")
        out.append(msg)
    return out


def check_prompt(value: Any, where: str, field: str = "prompt") -> PromptText:
    """A non-blank string or a non-empty message list."""
    if value is None:
        raise fail(where, field, "missing")
    if isinstance(value, str):
        if not value.strip():
            raise fail(where, field, "empty prompt")
        return value
    if isinstance(value, (list, tuple)):
        return check_messages(value, where, field)
    raise fail(where, field, f"expected a string or a list of chat messages, got {_type_name(value)}")


def check_text(value: Any, where: str, field: str, prompt: PromptText | None = None) -> str:
    """A response as plain text.

    Accepts a string, an assistant message, a {"text": ...} object (as written by
    `prefloop generate`), or a message list: the conversational form, where a prompt
    prefix equal to `prompt` is removed and exactly one assistant message must remain.
    """
    if value is None:
        raise fail(where, field, "missing")
    if isinstance(value, str):
        if not value.strip():
            raise fail(where, field, "empty")
        return value
    if isinstance(value, dict) and "role" not in value and "text" in value:
        return check_text(value["text"], where, field)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, (list, tuple)):
        msgs = check_messages(value, where, field)
        if isinstance(prompt, list) and len(msgs) > len(prompt) and msgs[: len(prompt)] == prompt:
            msgs = msgs[len(prompt) :]
        if len(msgs) != 1:
            raise fail(where, field, f"expected one assistant message, got {len(msgs)} messages")
        if msgs[0]["role"] != "assistant":
            raise fail(where, field, f"expected an assistant message, got role '{msgs[0]['role']}'")
        return check_text(msgs[0]["content"], where, field)
    raise fail(where, field, f"expected a string, got {_type_name(value)}")


def check_number(value: Any, where: str, field: str) -> float | int:
    """A finite int or float (booleans and numeric strings are rejected)."""
    if value is None:
        raise fail(where, field, "missing")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(where, field, f"expected a number, got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise fail(where, field, f"expected a finite number, got {value!r}")
    return value if isinstance(value, (int, float)) else float(value)


def check_bool(value: Any, where: str, field: str) -> bool:
    """A JSON true/false. Strings like "true" and numbers like 1 are rejected: a
    silently misread label would flip the training signal."""
    if value is None:
        raise fail(where, field, "missing")
    if not isinstance(value, bool):
        hint = " (a string; write true or false without quotes)" if isinstance(value, str) else ""
        raise fail(where, field, f"expected true or false, got {value!r}{hint}")
    return value


def check_meta(value: Any, where: str) -> dict[str, Any]:
    """An object; a JSON string of one (how the writers store `meta` in Parquet) is decoded."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise fail(where, "meta", "expected an object (or a JSON string of one)") from None
    if not isinstance(value, dict):
        raise fail(where, "meta", f"expected an object, got {_type_name(value)}")
    return dict(value)


def _meta_with_extras(row: dict[str, Any], kind: str, where: str) -> dict[str, Any]:
    meta = check_meta(row.get("meta"), where)
    for key, value in row.items():
        if key not in KIND_KEYS[kind]:
            meta.setdefault(key, value)
    return meta


# ---------------------------------------------------------------- kind parsers


def _implicit_prompt(chosen: Any, rejected: Any, where: str) -> tuple[PromptText, Any, Any]:
    """Split the prompt off two full responses that share a beginning (TRL's implicit prompt)."""
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise fail(where, "prompt", "missing (and 'chosen' and 'rejected' share no leading messages)")
        if n == len(chosen) == len(rejected):
            raise fail(where, "rejected", "identical to 'chosen'")
        return check_messages(chosen[:n], where, "prompt"), chosen[n:], rejected[n:]
    if isinstance(chosen, str) and isinstance(rejected, str):
        if chosen == rejected:
            raise fail(where, "rejected", "identical to 'chosen'")
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        # Cut at the last whitespace of the shared text so no word is split in two.
        cut = max(chosen.rfind(" ", 0, n), chosen.rfind("\n", 0, n)) + 1
        if cut == 0 or not chosen[:cut].strip():
            raise fail(where, "prompt", "missing (and 'chosen' and 'rejected' share no leading text)")
        return chosen[:cut], chosen[cut:], rejected[cut:]
    raise fail(where, "prompt", "missing")


def parse_pairwise(row: dict[str, Any], where: str) -> PreferencePair:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise fail(where, key, "missing")
    chosen_raw, rejected_raw = row["chosen"], row["rejected"]
    if "prompt" in row:
        prompt = check_prompt(row["prompt"], where)
    else:
        prompt, chosen_raw, rejected_raw = _implicit_prompt(chosen_raw, rejected_raw, where)
    chosen = check_text(chosen_raw, where, "chosen", prompt)
    rejected = check_text(rejected_raw, where, "rejected", prompt)
    if chosen == rejected:
        raise fail(where, "rejected", "identical to 'chosen'")
    margin = row.get("margin")
    if margin is not None:
        margin = check_number(margin, where, "margin")
    return PreferencePair(prompt, chosen, rejected, margin, _meta_with_extras(row, "pairwise", where))


def parse_ranked(row: dict[str, Any], where: str) -> RankedResponses:
    prompt = check_prompt(row.get("prompt"), where)
    responses = row.get("responses")
    if responses is None:
        raise fail(where, "responses", "missing")
    if not isinstance(responses, (list, tuple)):
        raise fail(where, "responses", f"expected a list of responses, got {_type_name(responses)}")
    if len(responses) == 0:
        raise fail(where, "responses", "empty ranking")
    if len(responses) < 2:
        raise fail(where, "responses", "a ranking needs at least 2 responses, got 1")
    texts = [check_text(r, where, f"responses[{i}]", prompt) for i, r in enumerate(responses)]
    ranks = row.get("ranks")
    if ranks is not None:
        if not isinstance(ranks, (list, tuple)):
            raise fail(where, "ranks", f"expected a list of integers, got {_type_name(ranks)}")
        if len(ranks) != len(texts):
            raise fail(where, "ranks", f"has {len(ranks)} entries but 'responses' has {len(texts)}")
        for i, r in enumerate(ranks):
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise fail(where, "ranks", f"entry {i}: expected an integer >= 0 (0 = best), got {r!r}")
        ranks = list(ranks)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            differ = ranks is None or ranks[i] != ranks[j]
            if texts[i] == texts[j] and differ:
                raise fail(where, "responses", f"responses {i} and {j} are identical but ranked differently")
    return RankedResponses(prompt, texts, ranks, _meta_with_extras(row, "ranked", where))


def parse_binary(row: dict[str, Any], where: str) -> BinaryFeedback:
    prompt = check_prompt(row.get("prompt"), where)
    completion = check_text(row.get("completion"), where, "completion", prompt)
    if "desirable" in row:
        desirable = check_bool(row["desirable"], where, "desirable")
        if "label" in row and check_bool(row["label"], where, "label") != desirable:
            raise fail(where, "label", "disagrees with 'desirable'")
    elif "label" in row:
        desirable = check_bool(row["label"], where, "label")
    else:
        raise fail(where, "label", "missing (or give 'desirable')")
    return BinaryFeedback(prompt, completion, desirable, _meta_with_extras(row, "binary", where))


def _response_field(row: dict[str, Any]) -> str:
    return "completion" if "completion" in row and "response" not in row else "response"


def parse_rating(row: dict[str, Any], where: str) -> Rating:
    prompt = check_prompt(row.get("prompt"), where)
    field = _response_field(row)
    response = check_text(row.get(field), where, field, prompt)
    score = check_number(row.get("score"), where, "score")
    return Rating(prompt, response, score, _meta_with_extras(row, "rating", where))


def parse_demonstration(row: dict[str, Any], where: str) -> Demonstration:
    if "messages" in row and "prompt" not in row:
        msgs = check_messages(row["messages"], where, "messages")
        if len(msgs) < 2:
            raise fail(where, "messages", "needs a prompt message before the assistant's reply")
        if msgs[-1]["role"] != "assistant":
            raise fail(
                where, "messages", f"the last message must be the assistant's, got role '{msgs[-1]['role']}'"
            )
        response = check_text(msgs[-1]["content"], where, "messages")
        return Demonstration(msgs[:-1], response, _meta_with_extras(row, "demonstration", where))
    prompt = check_prompt(row.get("prompt"), where)
    field = _response_field(row)
    response = check_text(row.get(field), where, field, prompt)
    return Demonstration(prompt, response, _meta_with_extras(row, "demonstration", where))


def parse_prompt(row: dict[str, Any], where: str) -> Prompt:
    return Prompt(check_prompt(row.get("prompt"), where), _meta_with_extras(row, "prompt", where))


PARSERS: dict[str, Callable[[dict[str, Any], str], Record]] = {
    "pairwise": parse_pairwise,
    "ranked": parse_ranked,
    "binary": parse_binary,
    "rating": parse_rating,
    "demonstration": parse_demonstration,
    "prompt": parse_prompt,
}


def detect_kind(row: dict[str, Any], where: str) -> str:
    """The record kind a row's keys describe (the first rule that matches wins)."""
    keys = set(row)
    if keys & {"chosen", "rejected"}:
        return "pairwise"
    if keys & {"responses", "ranks"}:
        return "ranked"
    if keys & {"label", "desirable"}:
        return "binary"
    if "score" in keys:
        return "rating"
    if keys & {"messages", "completion", "response"}:
        return "demonstration"
    if "prompt" in keys:
        return "prompt"
    raise DataError(
        f"{where}: unknown record format: keys {sorted(keys)}; expected one of: {EXPECTED_FORMATS}"
    )


def clean_row(row: Any, where: str) -> dict[str, Any]:
    """Check that a row is an object and drop null values (Parquet's missing keys)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {_type_name(row)}")
    return {k: v for k, v in row.items() if v is not None}


def parse_row(row: Any, where: str, expect: str | None = None) -> tuple[str, Record]:
    """Validate one row; returns (its kind, the record).

    `expect` is the kind of the rows before it. A row whose keys all belong to that
    kind is parsed as that kind, so a line that merely lacks a field reports the
    missing field ("field 'label': missing") instead of looking like another kind.
    """
    row = clean_row(row, where)
    kind = detect_kind(row, where) if row else None
    if kind is None:
        raise DataError(f"{where}: empty object; expected one of: {EXPECTED_FORMATS}")
    if expect is not None and kind != expect and set(row) <= KIND_KEYS[expect]:
        kind = expect
    return kind, PARSERS[kind](row, where)
