"""Preference data: record types, readers/writers, validation, tokenization and collation."""

from prefloop.data.records import (
    BinaryFeedback,
    Demonstration,
    PreferencePair,
    Prompt,
    RankedResponses,
    Rating,
    Record,
    record_to_dict,
)

__all__ = [
    "BinaryFeedback",
    "Demonstration",
    "PreferencePair",
    "Prompt",
    "RankedResponses",
    "Rating",
    "Record",
    "record_to_dict",
]
