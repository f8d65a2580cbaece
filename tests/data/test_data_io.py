"""Readers and writers: exact round trips, TRL formats read unchanged, folders, kind conversion."""

from __future__ import annotations

import json
from math import comb

import pytest

from prefloop.data import (
    BinaryFeedback,
    DataError,
    Demonstration,
    PreferencePair,
    Prompt,
    RankedResponses,
    Rating,
    convert_record,
    ranked_to_pairs,
    read_records,
    records_from_dicts,
    write_records,
)

CHAT = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello?"}]

SAMPLES = {
    "prompt": [Prompt("tell me a story"), Prompt("what color", meta={"id": 7})],
    "demonstration": [
        Demonstration("hi", "hello there"),
        Demonstration("how are you", "fine, thanks", meta={"source": "edit", "tags": ["a", "b"]}),
    ],
    "pairwise": [
        PreferencePair("the sky is", "blue", "green", margin=2.0, meta={"annotator": "ann-1"}),
        PreferencePair("say hi", "hi!", "no.", margin=None),
        PreferencePair("q", "a1", "a2", margin=0.5),
    ],
    "ranked": [
        RankedResponses("p1", ["best", "mid", "worst"]),
        RankedResponses("p2", ["x", "y", "z", "w"], ranks=[1, 0, 1, 2], meta={"k": 4}),
    ],
    "binary": [BinaryFeedback("p", "good answer", True), BinaryFeedback("p", "bad answer", False, {"n": 1})],
    "rating": [Rating("p", "r1", 3), Rating("p", "r2", 6.5, meta={"scale": "1-7"})],
}
CHAT_SAMPLES = {
    "pairwise": [PreferencePair(CHAT, "hi!", "go away"), PreferencePair(CHAT, "hello", "bye", 1.0)],
    "demonstration": [Demonstration(CHAT, "hello, friend")],
    "prompt": [Prompt(CHAT, {"x": {"nested": [1, 2]}})],
}


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".jsonl", ".json", ".parquet", ""])
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip_every_kind(tmp_path, kind, ext):
    path = write_records(SAMPLES[kind], tmp_path / f"data{ext}")
    assert read_records(path) == SAMPLES[kind]


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ""])
@pytest.mark.parametrize("kind", sorted(CHAT_SAMPLES))
def test_round_trip_chat_prompts(tmp_path, kind, ext):
    path = write_records(CHAT_SAMPLES[kind], tmp_path / f"chat{ext}")
    assert read_records(path) == CHAT_SAMPLES[kind]


def test_parquet_refuses_mixed_prompt_types_clearly(tmp_path):
    records = [PreferencePair("s", "a", "b"), PreferencePair(CHAT, "a", "b")]
    with pytest.raises(DataError, match="column 'prompt'.*jsonl"):
        write_records(records, tmp_path / "mixed.parquet")
    write_records(records, tmp_path / "mixed.jsonl")  # JSONL holds both
    assert read_records(tmp_path / "mixed.jsonl") == records


def test_write_refuses_mixed_kinds_and_invalid_records(tmp_path):
    with pytest.raises(DataError, match="record 1 is prompt"):
        write_records([PreferencePair("p", "a", "b"), Prompt("p")], tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="record 0: field 'rejected': identical"):
        write_records([PreferencePair("p", "a", "a")], tmp_path / "x.jsonl")


def test_write_refuses_meta_that_json_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="record 0: field 'meta': not JSON-serializable"):
        write_records([Prompt("p", meta={"when": object()})], tmp_path / "x.parquet")


def test_jsonl_written_keys_are_the_documented_fields(tmp_path):
    path = write_records(SAMPLES["binary"][:1] + [BinaryFeedback("p", "c", False)], tmp_path / "b.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"prompt": "p", "completion": "good answer", "desirable": True}


# ---------------------------------------------------------------- TRL formats, unchanged


def test_trl_standard_preference(tmp_path):
    path = write_lines(
        tmp_path / "p.jsonl", [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}]
    )
    assert read_records(path) == [PreferencePair("The sky is", " blue.", " green.")]


def test_trl_conversational_preference(tmp_path):
    row = {
        "prompt": [{"role": "user", "content": "What color is the sky?"}],
        "chosen": [{"role": "assistant", "content": "It is blue."}],
        "rejected": [{"role": "assistant", "content": "It is green."}],
    }
    [rec] = read_records(write_lines(tmp_path / "c.jsonl", [row]))
    assert rec == PreferencePair(row["prompt"], "It is blue.", "It is green.")


def test_trl_conversational_implicit_prompt(tmp_path):
    user = {"role": "user", "content": "What color is the sky?"}
    row = {
        "chosen": [user, {"role": "assistant", "content": "It is blue."}],
        "rejected": [user, {"role": "assistant", "content": "It is green."}],
    }
    [rec] = read_records(write_lines(tmp_path / "i.jsonl", [row]))
    assert rec == PreferencePair([user], "It is blue.", "It is green.")


def test_trl_standard_implicit_prompt_splits_at_a_word_boundary(tmp_path):
    row = {"chosen": "The sky is blue.", "rejected": "The sky is bright green."}
    [rec] = read_records(write_lines(tmp_path / "s.jsonl", [row]))
    assert rec == PreferencePair("The sky is ", "blue.", "bright green.")


def test_full_conversation_responses_with_explicit_prompt(tmp_path):
    prompt = [{"role": "user", "content": "hi"}]
    row = {
        "prompt": prompt,
        "chosen": prompt + [{"role": "assistant", "content": "hello"}],
        "rejected": prompt + [{"role": "assistant", "content": "go"}],
    }
    assert read_records(write_lines(tmp_path / "f.jsonl", [row])) == [PreferencePair(prompt, "hello", "go")]


def test_trl_unpaired_preference_is_binary(tmp_path):
    rows = [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {
            "prompt": [{"role": "user", "content": "Sky?"}],
            "completion": [{"role": "assistant", "content": "Green."}],
            "label": False,
        },
    ]
    recs = read_records(write_lines(tmp_path / "kto.jsonl", rows))
    assert recs == [
        BinaryFeedback("The sky is", " blue.", True),
        BinaryFeedback(rows[1]["prompt"], "Green.", False),
    ]


def test_trl_messages_is_demonstration(tmp_path):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "fine"},
    ]
    [rec] = read_records(write_lines(tmp_path / "m.jsonl", [{"messages": msgs}]))
    assert rec == Demonstration(msgs[:-1], "fine")


def test_trl_prompt_completion_is_demonstration(tmp_path):
    rows = [
        {"prompt": "The sky is", "completion": " blue."},
        {
            "prompt": [{"role": "user", "content": "Sky?"}],
            "completion": [{"role": "assistant", "content": "Blue."}],
        },
    ]
    recs = read_records(write_lines(tmp_path / "pc.jsonl", rows))
    assert recs == [Demonstration("The sky is", " blue."), Demonstration(rows[1]["prompt"], "Blue.")]


def test_trl_prompt_only(tmp_path):
    assert read_records(write_lines(tmp_path / "po.jsonl", [{"prompt": "The sky is"}])) == [
        Prompt("The sky is")
    ]


def test_trl_parquet_and_dataset_dir_with_extra_columns(tmp_path):
    import datasets

    rows = {
        "prompt": [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]],
        "chosen": [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "c"}]],
        "rejected": [[{"role": "assistant", "content": "b"}], [{"role": "assistant", "content": "d"}]],
        "score_chosen": [8.0, 9.0],
    }
    ds = datasets.Dataset.from_dict(rows)
    ds.to_parquet(str(tmp_path / "trl.parquet"))
    ds.save_to_disk(str(tmp_path / "trl_ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "trl_dd"))
    expected = [
        PreferencePair(rows["prompt"][0], "a", "b", meta={"score_chosen": 8.0}),
        PreferencePair(rows["prompt"][1], "c", "d", meta={"score_chosen": 9.0}),
    ]
    assert read_records(tmp_path / "trl.parquet") == expected
    assert read_records(tmp_path / "trl_ds") == expected
    assert read_records(tmp_path / "trl_dd") == expected  # the train split
    assert read_records(tmp_path / "trl_dd" / "test") == expected[:1]


def test_our_formats_detected(tmp_path):
    rows = [
        {"prompt": "p", "responses": ["a", {"text": "b", "model": "m", "logprob": -1.0}], "ranks": [1, 0]}
    ]
    assert read_records(write_lines(tmp_path / "r.jsonl", rows)) == [RankedResponses("p", ["a", "b"], [1, 0])]
    rows = [{"prompt": "p", "response": "r", "score": 4}]
    assert read_records(write_lines(tmp_path / "s.jsonl", rows)) == [Rating("p", "r", 4)]
    rows = [{"prompt": "p", "completion": "c", "desirable": False}]
    assert read_records(write_lines(tmp_path / "d.jsonl", rows)) == [BinaryFeedback("p", "c", False)]
    rows = [{"prompt": "p", "response": "r"}]
    assert read_records(write_lines(tmp_path / "demo.jsonl", rows)) == [Demonstration("p", "r")]


def test_json_list_and_jsonl_named_json(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}]))
    assert read_records(tmp_path / "list.json") == [Prompt("a"), Prompt("b")]
    write_lines(tmp_path / "lines.json", [{"prompt": "a"}, {"prompt": "b"}])
    assert read_records(tmp_path / "lines.json") == [Prompt("a"), Prompt("b")]


def test_folder_reads_every_file_in_name_order(tmp_path):
    write_records(SAMPLES["pairwise"][:1], tmp_path / "a.jsonl")
    write_records(SAMPLES["pairwise"][1:2], tmp_path / "b.parquet")
    write_records(SAMPLES["pairwise"][2:], tmp_path / "c_ds")
    (tmp_path / "README.md").write_text("not data")
    assert read_records(tmp_path) == SAMPLES["pairwise"]


def test_records_from_dicts():
    assert records_from_dicts([{"prompt": "p", "chosen": "a", "rejected": "b"}]) == [
        PreferencePair("p", "a", "b")
    ]
    with pytest.raises(DataError, match=r"<data>:row 1: field 'rejected': missing"):
        records_from_dicts([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}])


# ---------------------------------------------------------------- kind conversion


@pytest.mark.parametrize(
    "ranks, expected_pairs",
    [
        (None, comb(4, 2)),  # list order, no ties: all 6 pairs
        ([0, 1, 2, 3], comb(4, 2)),
        ([0, 1, 1, 2], comb(4, 2) - 1),  # one tied pair skipped
        ([0, 0, 1, 1], comb(4, 2) - 2),
        ([2, 2, 2, 2], 0),  # all tied: nothing to learn
    ],
)
def test_ranked_to_pairs_counts(ranks, expected_pairs):
    rec = RankedResponses("p", ["a", "b", "c", "d"], ranks)
    pairs = ranked_to_pairs(rec)
    assert len(pairs) == expected_pairs
    order = ranks or [0, 1, 2, 3]
    rank = dict(zip("abcd", order))
    assert all(rank[p.chosen] < rank[p.rejected] for p in pairs)
    assert len({(p.chosen, p.rejected) for p in pairs}) == expected_pairs


def test_ranked_to_pairs_order_and_content():
    rec = RankedResponses("p", ["w", "b", "m"], ranks=[2, 0, 1], meta={"id": 1})
    pairs = ranked_to_pairs(rec)
    assert [(p.chosen, p.rejected) for p in pairs] == [("b", "m"), ("b", "w"), ("m", "w")]
    assert all(p.prompt == "p" and p.meta == {"id": 1} for p in pairs)


def test_read_ranked_as_pairwise(tmp_path):
    rows = [
        {"prompt": "p1", "responses": ["a", "b", "c"]},
        {"prompt": "p2", "responses": ["x", "y", "z", "w"], "ranks": [0, 1, 1, 2]},
    ]
    pairs = read_records(write_lines(tmp_path / "r.jsonl", rows), kind="pairwise")
    assert len(pairs) == comb(3, 2) + comb(4, 2) - 1
    assert all(isinstance(p, PreferencePair) for p in pairs)


def test_read_pairwise_as_binary_demonstration_prompt_ranked(tmp_path):
    path = write_records([PreferencePair("p", "good", "bad", meta={"i": 0})], tmp_path / "p.jsonl")
    assert read_records(path, kind="binary") == [
        BinaryFeedback("p", "good", True, {"i": 0}),
        BinaryFeedback("p", "bad", False, {"i": 0}),
    ]
    assert read_records(path, kind="demonstration") == [Demonstration("p", "good", {"i": 0})]
    assert read_records(path, kind="prompt") == [Prompt("p", {"i": 0})]
    assert read_records(path, kind="ranked") == [RankedResponses("p", ["good", "bad"], None, {"i": 0})]
    assert read_records(path, kind="pairwise") == [PreferencePair("p", "good", "bad", meta={"i": 0})]


def test_ranked_as_demonstration_takes_the_best():
    [demo] = convert_record(RankedResponses("p", ["x", "y", "z"], [2, 0, 1]), "demonstration")
    assert demo == Demonstration("p", "y")


def test_impossible_conversion_names_the_line(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [{"prompt": "p", "response": "r", "score": 1}])
    with pytest.raises(DataError, match=r"r\.jsonl:1: cannot read rating data as pairwise"):
        read_records(path, kind="pairwise")
    with pytest.raises(DataError, match="unknown kind 'pairs'"):
        read_records(path, kind="pairs")
