"""Preference data: record types, readers/writers, validation, tokenization and collation."""

from prefloop.data.io import (
    KINDS,
    convert_record,
    kind_of,
    ranked_to_pairs,
    read_records,
    records_from_dicts,
    write_records,
)
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
from prefloop.data.tokenize import TokenizedSequence, encode, encode_prompt, pad_batch
from prefloop.data.validate import DataError

__all__ = [
    "KINDS",
    "BinaryFeedback",
    "DataError",
    "Demonstration",
    "PreferencePair",
    "Prompt",
    "RankedResponses",
    "Rating",
    "Record",
    "TokenizedSequence",
    "convert_record",
    "encode",
    "encode_prompt",
    "kind_of",
    "pad_batch",
    "ranked_to_pairs",
    "read_records",
    "record_to_dict",
    "records_from_dicts",
    "write_records",
]
