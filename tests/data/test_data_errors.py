"""Bad input: every error names the file, the line (or row) and the field."""

from __future__ import annotations

import json

import pytest

from prefloop.data import DataError, read_records

GOOD_PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}


def read_bad_line(tmp_path, bad, good=GOOD_PAIR, name="prefs.jsonl"):
    """A file whose line 3 is `bad` (a dict, or raw text) after two good lines."""
    lines = [json.dumps(good), json.dumps(good), bad if isinstance(bad, str) else json.dumps(bad)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(path)
    return str(info.value)


def assert_names(msg, *parts):
    for part in parts:
        assert part in msg, f"{part!r} not in error: {msg}"


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
        ({"prompt": "p", "rejected": "a"}, "chosen", "missing"),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "rejected", "identical to 'chosen'"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt", "empty prompt"),
        ({"prompt": "   ", "chosen": "a", "rejected": "b"}, "prompt", "empty prompt"),
        (
            {"prompt": 5, "chosen": "a", "rejected": "b"},
            "prompt",
            "expected a string or a list of chat messages",
        ),
        ({"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "empty"),
        ({"prompt": "p", "chosen": "a", "rejected": 3}, "rejected", "expected a string"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "expected a number"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "meta": [1]}, "meta", "expected an object"),
        (
            {"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"},
            "prompt",
            "message 0: missing 'content'",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "user", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "chosen",
            "expected an assistant message",
        ),
        ({"chosen": "alpha", "rejected": "beta"}, "prompt", "missing"),
    ],
)
def test_pairwise_errors(tmp_path, bad, field, words):
    msg = read_bad_line(tmp_path, bad)
    assert_names(msg, "prefs.jsonl:3:", f"field '{field}'", words)


RANKED = {"prompt": "p", "responses": ["a", "b"]}


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"prompt": "p", "responses": []}, "responses", "empty ranking"),
        ({"prompt": "p", "responses": ["only"]}, "responses", "at least 2"),
        (
            {"prompt": "p", "responses": ["a", "b", "c"], "ranks": [0, 1]},
            "ranks",
            "has 2 entries but 'responses' has 3",
        ),
        ({"prompt": "p", "responses": ["a", "b"], "ranks": [0, "1"]}, "ranks", "entry 1"),
        ({"prompt": "p", "responses": ["a", "b"], "ranks": [0, -1]}, "ranks", "entry 1"),
        (
            {"prompt": "p", "responses": ["a", "a"], "ranks": [0, 1]},
            "responses",
            "identical but ranked differently",
        ),
        ({"prompt": "p", "responses": ["a", ""]}, "responses[1]", "empty"),
        ({"prompt": "p", "responses": "a"}, "responses", "expected a list"),
        ({"prompt": "p"}, "responses", "missing"),  # a ranked file's line lacking the field
    ],
)
def test_ranked_errors(tmp_path, bad, field, words):
    msg = read_bad_line(tmp_path, bad, good=RANKED, name="ranked.jsonl")
    assert_names(msg, "ranked.jsonl:3:", f"field '{field}'", words)


BINARY = {"prompt": "p", "completion": "c", "label": True}


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"prompt": "p", "completion": "c", "label": "true"}, "label", "expected true or false, got 'true'"),
        ({"prompt": "p", "completion": "c", "label": 1}, "label", "expected true or false, got 1"),
        ({"prompt": "p", "completion": "c", "desirable": "yes"}, "desirable", "expected true or false"),
        ({"prompt": "p", "completion": "c"}, "label", "missing"),
        ({"prompt": "p", "label": False}, "completion", "missing"),
        ({"completion": "c", "label": False}, "prompt", "missing"),
        ({"prompt": "p", "completion": "c", "label": True, "desirable": False}, "label", "disagrees"),
    ],
)
def test_binary_errors(tmp_path, bad, field, words):
    msg = read_bad_line(tmp_path, bad, good=BINARY, name="kto.jsonl")
    assert_names(msg, "kto.jsonl:3:", f"field '{field}'", words)


RATING = {"prompt": "p", "response": "r", "score": 5}


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"prompt": "p", "response": "r", "score": "5"}, "score", "expected a number"),
        ({"prompt": "p", "response": "r", "score": True}, "score", "expected a number"),
        ({"prompt": "p", "response": "r"}, "score", "missing"),
    ],
)
def test_rating_errors(tmp_path, bad, field, words):
    msg = read_bad_line(tmp_path, bad, good=RATING, name="ratings.jsonl")
    assert_names(msg, "ratings.jsonl:3:", f"field '{field}'", words)


def test_nan_score(tmp_path):
    msg = read_bad_line(tmp_path, '{"prompt": "p", "response": "r", "score": NaN}', good=RATING)
    assert_names(msg, "prefs.jsonl:3:", "field 'score'", "finite")


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "needs a prompt message"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "messages",
            "last message must be the assistant's",
        ),
        ({"messages": "hi"}, "messages", "list of chat messages"),
    ],
)
def test_messages_errors(tmp_path, bad, field, words):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    msg = read_bad_line(tmp_path, bad, good=good, name="sft.jsonl")
    assert_names(msg, "sft.jsonl:3:", f"field '{field}'", words)


def test_invalid_json_names_line(tmp_path):
    msg = read_bad_line(tmp_path, '{"prompt": "p", "chosen": ')
    assert_names(msg, "prefs.jsonl:3:", "invalid JSON")


def test_non_object_line(tmp_path):
    msg = read_bad_line(tmp_path, '["p", "a", "b"]')
    assert_names(msg, "prefs.jsonl:3:", "expected a JSON object, got a list")


def test_unknown_format_lists_keys_and_formats(tmp_path):
    msg = read_bad_line(tmp_path, {"question": "q", "answer": "a"}, good={"question": "q", "answer": "a"})
    assert_names(
        msg,
        "prefs.jsonl:1:",
        "unknown record format",
        "['answer', 'question']",
        "prompt+chosen+rejected",
        "messages",
    )


def test_mixed_kinds_name_the_first_differing_line(tmp_path):
    msg = read_bad_line(tmp_path, {"prompt": "p", "responses": ["a", "b"]})
    assert_names(msg, "prefs.jsonl:3:", "ranked", "prefs.jsonl:1 holds pairwise", "kind=")


def test_blank_lines_keep_numbering(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(GOOD_PAIR) + "\n\n\n" + json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    with pytest.raises(DataError, match=r"gaps\.jsonl:4: field 'rejected': missing"):
        read_records(path)


def test_parquet_errors_name_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["p", "p", "p"], "chosen": ["a", "b", "c"], "rejected": ["x", "y", "c"]})
    pq.write_table(table, tmp_path / "prefs.parquet")
    with pytest.raises(DataError) as info:
        read_records(tmp_path / "prefs.parquet")
    assert_names(str(info.value), "prefs.parquet:row 2:", "field 'rejected'", "identical")


def test_parquet_missing_value_is_missing_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["p", "p"], "completion": ["a", "b"], "label": [True, None]})
    pq.write_table(table, tmp_path / "kto.parquet")
    with pytest.raises(DataError, match=r"kto\.parquet:row 1: field 'label': missing"):
        read_records(tmp_path / "kto.parquet")


def test_dataset_dir_errors_name_the_row(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"prompt": ["p", "q"], "completion": ["a", "b"], "label": ["true", "false"]}
    )
    ds.save_to_disk(str(tmp_path / "kto_ds"))
    with pytest.raises(DataError) as info:
        read_records(tmp_path / "kto_ds")
    assert_names(str(info.value), "kto_ds:row 0:", "field 'label'", "'true'")


def test_json_list_errors_name_the_item(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([GOOD_PAIR, {"prompt": "p", "chosen": "a"}]))
    with pytest.raises(DataError, match=r"d\.json:item 1: field 'rejected': missing"):
        read_records(tmp_path / "d.json")


def test_missing_path_empty_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no records"):
        read_records(tmp_path / "empty.jsonl")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        read_records(tmp_path / "data.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet file"):
        read_records(tmp_path / "bad.parquet")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    with pytest.raises(DataError, match="folder holds no data files"):
        read_records(empty_dir)


def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError)
