"""The sharded engines with real processes on CPU: FSDP2 (torch `fully_shard`, gloo) in the default
tier, DeepSpeed ZeRO-2 / ZeRO-3 (DeepSpeed's CPU accelerator, gloo) in the slow tier.

Each launch runs the unchanged commands under `accelerate launch` with the shipped config, 2
processes x batch 4, on 9 records for 2 epochs (steps of 8, 1, 8, 1 records); the final weights
and per-step losses must equal one process with batch 4 x accumulation 2. Checkpoints: a run
stopped after step 2 (its step-2 checkpoint written) and resumed with `--resume` must end where
the uninterrupted run ends; FSDP2's gathered checkpoint also resumes on one process.
"""

import importlib.util
import shutil

import pytest
from distrun import DATA, REPO, TIGHT, argv, assert_same_weights, launch, nine_records, train_rows

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


def assert_resumed(resumed, uninterrupted):
    """A run stopped after step 2 and resumed equals the uninterrupted one (same computation)."""
    assert [r["step"] for r in train_rows(resumed)] == [1, 2, 3, 4]
    assert_same_weights(resumed, uninterrupted, atol=1e-6)
    for a, b in zip(train_rows(resumed), train_rows(uninterrupted), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)


def crash_and_resume(args):
    """Jobs (worker.py) of a run stopped after its step-2 checkpoint, then resumed."""
    return [{"argv": args, "crash_after": 2}, {"argv": [*args, "--resume"]}]


@pytest.fixture(scope="module")
def fsdp2(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp2")
    data = {
        "sft": nine_records(DATA / "sft.jsonl", root / "sft.jsonl"),
        "dpo": nine_records(DATA / "pairs.jsonl", root / "pairs.jsonl"),
    }
    two = root / "2p"
    lora = ["--batch-size", "4", "--save-steps", "0", "--lora"]
    jobs = [
        {"argv": argv("sft", data["sft"], two / "sft", "--batch-size", "4")},
        {"argv": argv("dpo", data["dpo"], two / "dpo", "--batch-size", "4")},  # checkpoint at step 2
        *crash_and_resume(argv("dpo", data["dpo"], two / "dpo-resumed", "--batch-size", "4")),
        {"argv": argv("dpo", data["dpo"], two / "dpo-lora", *lora)},
        *[  # the online loops are refused (one line, exit 2) before anything is trained
            {
                "argv": [*args, "--output-dir", str(two / args[0])],
                "exit_code_file": str(root / f"{args[0]}.exit"),
            }
            for args in ONLINE
        ],
    ]
    output = launch("fsdp2.yaml", jobs, root)
    (root / "launch.log").write_text(output)
    return root, data


TOY = f"{REPO / 'tests' / 'online' / 'toy_rewards.py'}:frac_e"
ONLINE = [
    ["grpo", "--model", "tiny", "--data", str(DATA / "prompts.jsonl"), "--reward", TOY],
    [
        "online-dpo",
        "--model",
        "tiny",
        "--num-eval-prompts",
        "0",
        "--teacher",
        "reward",
        "--reward-model",
        TOY,
    ],
]


def test_fsdp2_equals_one_process(fsdp2):
    root, data = fsdp2
    assert_equal_runs(root / "2p" / "sft", one_process("sft", data["sft"], root))
    assert_equal_runs(root / "2p" / "dpo", one_process("dpo", data["dpo"], root))


@pytest.mark.parametrize("command", [args[0] for args in ONLINE])
def test_fsdp2_refuses_the_online_loops_with_one_line(fsdp2, command):
    """The online loops sum their gradients themselves (forwards outside any engine wrapper) and
    sample on each rank: under FSDP2 they stop with a one-line error that says what to launch."""
    root = fsdp2[0]
    assert (root / f"{command}.exit").read_text() == "2"
    log = (root / "launch.log").read_text()
    name = command.replace("-", "_")  # the loop's name
    assert (
        f"{name} runs on one process or under DDP, not under fsdp: launch it with examples/accelerate/ddp.yaml"
        in log
    )
    assert not (root / "2p" / command / "final").exists()


def test_fsdp2_saves_merged_lora(fsdp2):
    from transformers import AutoModelForCausalLM

    lora = fsdp2[0] / "2p" / "dpo-lora"
    assert (lora / "adapter" / "adapter_config.json").exists()  # gathered on rank 0
    merged = AutoModelForCausalLM.from_pretrained(lora / "final")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert train_rows(lora)[-1]["loss"] < train_rows(lora)[0]["loss"]


def test_fsdp2_resume_equals_uninterrupted(fsdp2):
    two = fsdp2[0] / "2p"
    assert sorted(p.name for p in (two / "dpo" / "checkpoints").iterdir()) == ["step-2"]
    assert_resumed(two / "dpo-resumed", two / "dpo")


def test_fsdp2_checkpoint_resumes_on_one_process(fsdp2, tmp_path):
    """The gathered checkpoint (whole weights and moments) continues on another world size and engine."""
    root, data = fsdp2
    src = root / "2p" / "dpo"
    out = tmp_path / "dpo-1p-resumed"
    out.mkdir()
    shutil.copytree(src / "checkpoints", out / "checkpoints")
    shutil.copy(src / "metrics.jsonl", out / "metrics.jsonl")
    main(argv("dpo", data["dpo"], out, "--batch-size", "4", "--grad-accum", "2", "--resume"))
    assert_same_weights(out, src, TIGHT)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
@pytest.mark.parametrize("config", ["zero2.yaml", "zero3.yaml"])
def test_deepspeed_zero_equals_one_process_and_resumes(config, tmp_path, capsys):
    sft_data = nine_records(DATA / "sft.jsonl", tmp_path / "sft.jsonl")
    two = tmp_path / "2p"
    sft = argv("sft", sft_data, two / "sft", "--batch-size", "4", "--save-steps", "2")
    resumed = argv("sft", sft_data, two / "sft-resumed", "--batch-size", "4", "--save-steps", "2")
    launch(config, [{"argv": sft}, *crash_and_resume(resumed)], tmp_path)
    assert_equal_runs(two / "sft", one_process("sft", sft_data, tmp_path))
    step2 = two / "sft" / "checkpoints" / "step-2"
    assert (step2 / "deepspeed").is_dir()  # the engine's own partitions next to the gathered weights
    assert_resumed(two / "sft-resumed", two / "sft")
    # its optimizer partitions do not fit one process: refused with a one-line error, nothing trained
    out = tmp_path / "sft-1p"
    shutil.copytree(two / "sft" / "checkpoints", out / "checkpoints")
    with pytest.raises(SystemExit) as exit_info:
        main(argv("sft", sft_data, out, "--batch-size", "4", "--resume"))
    assert exit_info.value.code == 2
    assert "resume only under the same ZeRO stage and number of processes" in capsys.readouterr().err
