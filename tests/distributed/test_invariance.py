"""One code path for 1..N processes, proven with real multi-process runs.

Two processes (gloo, CPU) under `accelerate launch` with the shipped DDP config run the
unchanged training commands on the tiny random models; their final weights and logged metrics
must equal those of one process with the same records per step, both with batch 8 and with
batch 4 x accumulation 2. On 9 records (steps of 8, 1, 8, 1 records over two epochs) the
one-record steps leave rank 0 without data, so the stand-in micro-batch path runs too.
Plus: resume on 2 processes == uninterrupted, resume of a 2-process checkpoint on 1 process ==
uninterrupted, precomputed reference == live reference on 2 processes, LoRA with gradient
checkpointing on 2 processes == 1 process. (The online loops: test_online_invariance.py.)
"""

import shutil
from pathlib import Path

import pytest
from distrun import (
    ATOL,
    CASES,
    DATA,
    TIGHT,
    argv,
    assert_same_weights,
    final_weights,
    launch,
    nine_records,
    train_rows,
)
from safetensors.torch import load_file

from prefloop.cli import main
from prefloop.train.logs import read_metrics


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Output dirs: name -> path, for 2-process runs ('2p/...') and 1-process runs ('1p/...')."""
    root = tmp_path_factory.mktemp("dist")
    data = {
        "sft": nine_records(DATA / "sft.jsonl", root / "sft.jsonl"),
        "reward": nine_records(DATA / "pairs.jsonl", root / "pairs.jsonl"),
    }
    data["dpo"] = data["reward"]
    data["kto"] = nine_records(DATA / "binary.jsonl", root / "binary.jsonl")
    out = {"data/dpo": data["dpo"]}
    jobs = []
    for name in CASES:
        out[f"2p/{name}"] = root / "2p" / name
        jobs.append({"argv": argv(name, data[name], out[f"2p/{name}"], "--batch-size", "4")})
    out["2p/dpo-live"] = root / "2p" / "dpo-live"
    jobs.append(
        {"argv": argv("dpo", data["dpo"], out["2p/dpo-live"], "--batch-size", "4", "--no-precompute-ref")}
    )
    out["2p/dpo-resumed"] = root / "2p" / "dpo-resumed"
    crashed = argv("dpo", data["dpo"], out["2p/dpo-resumed"], "--batch-size", "4")
    jobs.append({"argv": crashed, "crash_after": 2})
    jobs.append({"argv": [*crashed, "--resume"]})
    lora = ["--lora", "--gradient-checkpointing", "--save-steps", "0"]
    out["2p/dpo-lora"] = root / "2p" / "dpo-lora"
    jobs.append({"argv": argv("dpo", data["dpo"], out["2p/dpo-lora"], "--batch-size", "4", *lora)})
    launch("ddp.yaml", jobs, root)
    out["1p/dpo-lora"] = root / "1p" / "dpo-lora"
    main(argv("dpo", data["dpo"], out["1p/dpo-lora"], "--batch-size", "4", "--grad-accum", "2", *lora))

    for name in CASES:  # one process: batch 8, and batch 4 x accumulation 2
        for tag, flags in (
            ("b8", ["--batch-size", "8"]),
            ("b4x2", ["--batch-size", "4", "--grad-accum", "2"]),
        ):
            out[f"1p/{name}-{tag}"] = root / "1p" / f"{name}-{tag}"
            main(argv(name, data[name], out[f"1p/{name}-{tag}"], *flags))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_process(runs, name):
    two = runs[f"2p/{name}"]
    # The reward model packs its rows alone but pads them under DDP (the packed reward head
    # reads the body directly, which would skip DDP's forward): another computation, so ATOL.
    tight = ATOL if name == "reward" else TIGHT
    for tag, atol in (("b8", ATOL), ("b4x2", tight)):
        one = runs[f"1p/{name}-{tag}"]
        assert_same_weights(two, one, atol)
        rows2, rows1 = train_rows(two), train_rows(one)
        assert [r["step"] for r in rows2] == [1, 2, 3, 4]  # 9 records, 8 per step, 2 epochs
        for r2, r1 in zip(rows2, rows1, strict=True):
            assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-5, abs=1e-6)
            assert r2["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-4)
            assert r2["tokens"] == r1["tokens"]
            assert r2["learning_rate"] == r1["learning_rate"]
    # the weights moved, so the equality above is not that of two untouched models
    from prefloop.models.load import resolve_model

    start = load_file(str(Path(resolve_model("tiny")) / "model.safetensors"))
    probe = "model.layers.0.self_attn.q_proj.weight"
    assert (final_weights(two)[probe] - start[probe]).abs().max() > 1e-4


def test_only_rank_0_writes(runs):
    two = runs["2p/dpo"]
    rows = read_metrics(two)
    assert [r["step"] for r in rows if "learning_rate" in r] == [1, 2, 3, 4]  # one line per step, not two
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-2"]


def test_precomputed_reference_equals_live_on_two_processes(runs):
    assert_same_weights(runs["2p/dpo"], runs["2p/dpo-live"], TIGHT)
    for a, b in zip(train_rows(runs["2p/dpo"]), train_rows(runs["2p/dpo-live"]), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)


def test_resume_on_two_processes_equals_uninterrupted(runs):
    resumed = runs["2p/dpo-resumed"]
    assert [r["step"] for r in train_rows(resumed)] == [1, 2, 3, 4]
    assert_same_weights(resumed, runs["2p/dpo"], atol=1e-6)
    for a, b in zip(train_rows(resumed), train_rows(runs["2p/dpo"]), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)


def test_two_process_checkpoint_resumes_on_one_process(runs, tmp_path):
    """Resume on another world size: the 2-process run's step-2 checkpoint, continued by 1 process."""
    src = runs["2p/dpo"]
    out = tmp_path / "dpo-1p-resumed"
    out.mkdir()
    shutil.copytree(src / "checkpoints", out / "checkpoints")
    shutil.copy(src / "metrics.jsonl", out / "metrics.jsonl")
    main(argv("dpo", runs["data/dpo"], out, "--batch-size", "8", "--resume"))
    assert_same_weights(out, src)


def test_lora_with_gradient_checkpointing_on_two_processes(runs):
    """LoRA (the reference is the adapter-disabled base) and gradient checkpointing under DDP."""
    two, one = runs["2p/dpo-lora"], runs["1p/dpo-lora"]
    assert (two / "adapter" / "adapter_config.json").exists()
    assert_same_weights(two, one, TIGHT)
    for a, b in zip(train_rows(two), train_rows(one), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
