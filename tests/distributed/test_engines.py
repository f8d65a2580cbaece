"""The sharded engines with real processes on CPU: FSDP2 (torch `fully_shard`, gloo) in the default
tier, DeepSpeed ZeRO-2 / ZeRO-3 (DeepSpeed's CPU accelerator, gloo) in the slow tier.

Each launch runs the unchanged commands under `accelerate launch` with the shipped config, 2
processes x batch 4, on 9 records for 2 epochs (steps of 8, 1, 8, 1 records); the final weights
and per-step losses must equal one process with batch 4 x accumulation 2.
"""

import importlib.util

import pytest
from distrun import DATA, TIGHT, argv, assert_same_weights, launch, nine_records, train_rows

from prefloop.cli import main


def one_process(name, data, root):
    out = root / "1p" / name
    main(argv(name, data, out, "--batch-size", "4", "--grad-accum", "2"))
    return out


def assert_equal_runs(two, one):
    assert_same_weights(two, one, TIGHT)
    rows2, rows1 = train_rows(two), train_rows(one)
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]
    for r2, r1 in zip(rows2, rows1, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-5, abs=1e-6)
        assert r2["grad_norm"] == pytest.approx(r1["grad_norm"], rel=1e-4)
        assert r2["tokens"] == r1["tokens"]


def test_fsdp2_equals_one_process_and_saves_merged_lora(tmp_path):
    from transformers import AutoModelForCausalLM

    sft_data = nine_records(DATA / "sft.jsonl", tmp_path / "sft.jsonl")
    pairs = nine_records(DATA / "pairs.jsonl", tmp_path / "pairs.jsonl")
    two = tmp_path / "2p"
    jobs = [
        {"argv": argv("sft", sft_data, two / "sft", "--batch-size", "4")},
        {"argv": argv("dpo", pairs, two / "dpo", "--batch-size", "4", "--save-steps", "0")},
        {"argv": argv("dpo", pairs, two / "dpo-lora", "--batch-size", "4", "--save-steps", "0", "--lora")},
    ]
    launch("fsdp2.yaml", jobs, tmp_path)
    assert_equal_runs(two / "sft", one_process("sft", sft_data, tmp_path))
    assert_equal_runs(two / "dpo", one_process("dpo", pairs, tmp_path))
    # LoRA under FSDP2: the adapter and a merged standalone final/ gathered on rank 0
    assert (two / "dpo-lora" / "adapter" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(two / "dpo-lora" / "final")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert train_rows(two / "dpo-lora")[-1]["loss"] < train_rows(two / "dpo-lora")[0]["loss"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
@pytest.mark.parametrize("config", ["zero2.yaml", "zero3.yaml"])
def test_deepspeed_zero_equals_one_process(config, tmp_path):
    sft_data = nine_records(DATA / "sft.jsonl", tmp_path / "sft.jsonl")
    two = tmp_path / "2p"
    launch(config, [{"argv": argv("sft", sft_data, two / "sft", "--batch-size", "4")}], tmp_path, timeout=900)
    assert_equal_runs(two / "sft", one_process("sft", sft_data, tmp_path))
