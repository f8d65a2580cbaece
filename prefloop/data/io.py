"""Read and write preference data: JSONL, JSON, Parquet, HF `datasets` directories, folders.

`read_records(path, kind=None)` returns validated records (see `prefloop.data.validate`
for the accepted formats, TRL's included). Errors name the place: JSONL lines are
numbered from 1 as in an editor (``prefs.jsonl:17``); Parquet and dataset rows and
JSON list items are 0-based indices as in pandas / `dataset[i]` (``prefs.parquet:row 16``).

One file holds one kind of record. `kind=` asks for a kind and converts where the
meaning is clear: ranked -> pairwise (all strictly ordered pairs), pairwise -> binary
(chosen desirable, rejected not), pairwise / ranked -> demonstration (the best
response), pairwise -> ranked, anything -> prompt.

`write_records(records, path)` writes by extension and round-trips exactly. In
Parquet and dataset directories `meta` is stored as a JSON string (its values can be
of any shape, which a columnar schema cannot hold); the reader decodes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prefloop.data.records import (
    RECORD_TYPES,
    BinaryFeedback,
    Demonstration,
    PreferencePair,
    Prompt,
    RankedResponses,
    Record,
    record_to_dict,
)
from prefloop.data.validate import KINDS, DataError, parse_row

__all__ = [
    "KINDS",
    "DataError",
    "convert_record",
    "kind_of",
    "ranked_to_pairs",
    "read_records",
    "read_rows",
    "records_from_dicts",
    "write_records",
]

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def kind_of(record: Record) -> str:
    """The kind name of a record ("pairwise", "ranked", ...)."""
    for name, cls in RECORD_TYPES.items():
        if type(record) is cls:
            return name
    raise TypeError(f"not a prefloop record: {type(record).__name__}")


# ---------------------------------------------------------------- raw rows per format


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line under a .json name (common on the Hub)
            yield from _jsonl_rows(path)
            return
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(data, dict):
        yield f"{path}:1", data
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield f"{path}:item {i}", item
    else:
        raise DataError(
            f"{path}: expected a list of objects (or one object per line), got {type(data).__name__}"
        )


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}:row {i}", row


def is_dataset_dir(path: Path) -> bool:
    """A directory written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def _dataset_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types; all mean "unreadable"
        raise DataError(f"{path}: not a readable datasets directory ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" in ds:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise DataError(
                f"{path}: a DatasetDict with splits {splits}; pass one split's folder, e.g. {path / splits[0]}"
            )
        path, ds = path / split, ds[split]
    for i, row in enumerate(ds.to_list()):
        yield f"{path}:row {i}", row


def _file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    if suffix == ".json":
        return _json_rows(path)
    if suffix == ".parquet":
        return _parquet_rows(path)
    raise DataError(
        f"{path}: unsupported file type '{suffix}'; expected .jsonl, .json, .parquet or a datasets directory"
    )


def read_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(location, raw row) for every row under `path`, whatever its format, unvalidated.

    Locations read like ``prefs.jsonl:17`` or ``prefs.parquet:row 16`` (see the module notes);
    unreadable input raises `DataError`. `read_records` validates these rows; other readers
    (e.g. the feedback server's campaign items) reuse them for their own row shapes.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if is_dataset_dir(path):
        yield from _dataset_rows(path)
        return
    if path.is_file():
        yield from _file_rows(path)
        return
    children = sorted(
        p
        for p in path.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and p.suffix.lower() in FILE_SUFFIXES) or is_dataset_dir(p))
    )
    if not children:
        raise DataError(
            f"{path}: folder holds no data files (.jsonl, .json, .parquet or datasets directories)"
        )
    for child in children:
        yield from read_rows(child)


# ---------------------------------------------------------------- kind conversion


def ranked_to_pairs(record: RankedResponses) -> list[PreferencePair]:
    """All strictly ordered pairs of a ranking: C(K,2) pairs, fewer by one per tied pair.

    Pairs come best-first: (best, 2nd), (best, 3rd), ..., (2nd, 3rd), ...
    """
    order = sorted(range(len(record.responses)), key=lambda i: (record.rank_of(i), i))
    pairs = []
    for a, i in enumerate(order):
        for j in order[a + 1 :]:
            if record.rank_of(i) < record.rank_of(j):
                pairs.append(
                    PreferencePair(
                        record.prompt, record.responses[i], record.responses[j], meta=dict(record.meta)
                    )
                )
    return pairs


def _best_response(record: RankedResponses) -> str:
    best = min(range(len(record.responses)), key=lambda i: (record.rank_of(i), i))
    return record.responses[best]


def convert_record(record: Record, kind: str, where: str = "") -> list[Record]:
    """`record` as records of `kind` (possibly several, e.g. a ranking's pairs)."""
    have = kind_of(record)
    if have == kind:
        return [record]
    meta = dict(record.meta)
    if kind == "prompt":
        return [Prompt(record.prompt, meta)]
    if kind == "pairwise" and isinstance(record, RankedResponses):
        return list[Record](ranked_to_pairs(record))
    if kind == "binary" and isinstance(record, PreferencePair):
        return [
            BinaryFeedback(record.prompt, record.chosen, True, meta),
            BinaryFeedback(record.prompt, record.rejected, False, dict(meta)),
        ]
    if kind == "demonstration" and isinstance(record, PreferencePair):
        return [Demonstration(record.prompt, record.chosen, meta)]
    if kind == "demonstration" and isinstance(record, RankedResponses):
        return [Demonstration(record.prompt, _best_response(record), meta)]
    if kind == "ranked" and isinstance(record, PreferencePair):
        return [RankedResponses(record.prompt, [record.chosen, record.rejected], None, meta)]
    prefix = f"{where}: " if where else ""
    raise DataError(f"{prefix}cannot read {have} data as {kind}")


# ---------------------------------------------------------------- public readers


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise DataError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")


def _parse_rows(rows: Iterable[tuple[str, Any]], kind: str | None, source: str) -> list[Record]:
    records: list[Record] = []
    first: tuple[str, str] | None = None  # (kind, location) of the first row
    for where, raw in rows:
        row_kind, record = parse_row(raw, where, expect=first[0] if first else None)
        if first is None:
            first = (row_kind, where)
        elif row_kind != first[0] and kind is None:
            raise DataError(
                f"{where}: a {row_kind} record, but {first[1]} holds {first[0]} records; "
                "one file holds one kind of record (pass kind= to convert)"
            )
        records.extend([record] if kind is None else convert_record(record, kind, where))
    if first is None:
        raise DataError(f"{source}: no records")
    return records


def read_records(path: str | Path, kind: str | None = None) -> list[Record]:
    """Read and validate every record under `path`.

    `path`: a .jsonl / .json / .parquet file, a `datasets` save_to_disk directory
    (a DatasetDict's "train" split, or its only split), or a folder of those (read in
    name order). `kind`: None keeps the kind the keys describe; one of `KINDS`
    converts (ranked -> pairwise expands each ranking into its ordered pairs).
    Raises `DataError` naming file, line/row and field on bad input.
    """
    _check_kind(kind)
    path = Path(path)
    return _parse_rows(read_rows(path), kind, str(path))


def records_from_dicts(
    rows: Iterable[dict[str, Any]], kind: str | None = None, source: str = "<data>"
) -> list[Record]:
    """Validate in-memory rows (e.g. a `datasets.Dataset`) like `read_records` does a file.

    Rows are numbered from 0 in errors: ``<data>:row 3: field 'chosen': missing``.
    """
    _check_kind(kind)
    return _parse_rows(((f"{source}:row {i}", row) for i, row in enumerate(rows)), kind, source)


# ---------------------------------------------------------------- writers


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column lists over the union of keys (missing -> None); meta as JSON text."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    cols = {k: [row.get(k) for row in rows] for k in keys}
    if "meta" in cols:
        cols["meta"] = [None if m is None else json.dumps(m, ensure_ascii=False) for m in cols["meta"]]
    return cols


def _arrow_table(rows: list[dict[str, Any]], path: Path):
    import pyarrow as pa

    cols = _columns(rows)
    arrays = {}
    for key, values in cols.items():
        try:
            arrays[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"{path}: column '{key}' mixes value types ({exc}); a columnar file needs one type "
                "per column (e.g. all prompts strings or all message lists) - write .jsonl instead"
            ) from None
    return pa.table(arrays) if arrays else pa.table({})


def write_records(records: Iterable[Record], path: str | Path) -> Path:
    """Write records of one kind; the format follows `path`.

    .jsonl (one object per line), .json (a list), .parquet, or any other path
    (no suffix / an existing folder) as a `datasets` save_to_disk directory.
    Every record is validated first, so what is written can be read back.
    """
    path = Path(path)
    records = list(records)
    for i, record in enumerate(records):
        if kind_of(record) != kind_of(records[0]):
            raise DataError(
                f"{path}: record {i} is {kind_of(record)} but record 0 is {kind_of(records[0])}; a file holds one kind"
            )
    rows = [record_to_dict(r) for r in records]
    for i, row in enumerate(rows):
        parse_row(row, f"{path}: record {i}")
        try:
            json.dumps(row)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: record {i}: field 'meta': not JSON-serializable ({exc})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(_arrow_table(rows, path), path)
    elif suffix == "" or path.is_dir():
        import datasets
        from datasets.table import InMemoryTable

        dataset = datasets.Dataset(InMemoryTable(_arrow_table(rows, path)))
        was_disabled = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # a bar per small write is noise
        try:
            dataset.save_to_disk(str(path))
        finally:
            if not was_disabled:
                datasets.enable_progress_bars()
    else:
        raise DataError(
            f"{path}: unsupported output type '{suffix}'; use .jsonl, .json, .parquet or a folder"
        )
    return path
