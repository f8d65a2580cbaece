"""`prefloop generate` end to end on the tiny model."""

import json

import pytest

from prefloop.cli import main


def test_generate_writes_k_responses_per_prompt(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        json.dumps({"prompt": "Tell me about dogs."})
        + "\n"
        + json.dumps({"prompt": [{"role": "user", "content": "Hi!"}]})
        + "\n"
    )
    out = tmp_path / "gen" / "out.jsonl"
    argv = [
        "generate",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--num-responses",
        "2",
        "--output",
        str(out),
        "--max-new-tokens",
        "4",
        "--seed",
        "3",
    ]
    main(argv)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["prompt"] for line in lines] == ["Tell me about dogs.", [{"role": "user", "content": "Hi!"}]]
    for line in lines:
        assert len(line["responses"]) == 2
        for r in line["responses"]:
            assert set(r) == {"text", "model", "logprob"} and r["model"] == "tiny" and r["logprob"] < 0
    first = out.read_text()
    main(argv)
    assert out.read_text() == first  # same seed, same file

    from prefloop.data.io import read_records

    ranked = read_records(out)  # the output reads back as prompt + K responses
    assert len(ranked) == 2 and len(ranked[0].responses) == 2

    # --model-name labels a run (two settings of one model are two leaderboard entries)
    labelled = tmp_path / "labelled.jsonl"
    main(argv[:-4] + ["--output", str(labelled), "--max-new-tokens", "4", "--model-name", "tiny-hot"])
    models = {r["model"] for line in labelled.read_text().splitlines() for r in json.loads(line)["responses"]}
    assert models == {"tiny-hot"}


def test_generate_bad_data_is_a_one_line_error(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--model", "tiny", "--data", str(data), "--output", str(tmp_path / "o.jsonl")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl:2" in err and "Traceback" not in err
