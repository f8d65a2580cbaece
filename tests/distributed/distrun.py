"""Helpers of the multi-process tests: launching jobs under `accelerate launch`, the shared cases,
and weight comparisons."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from prefloop.train.logs import read_metrics

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"
WORKER = Path(__file__).with_name("worker.py")
COMMON = ["--model", "tiny", "--report-to-tensorboard", "no", "--epochs", "2", "--learning-rate", "1e-3"]
CASES = {  # name: (command, data file, extra flags)
    "sft": ("sft", "sft.jsonl", []),
    "reward": ("reward", "pairs.jsonl", ["--eval-fraction", "0", "--no-normalize-rewards"]),
    "dpo": ("dpo", "pairs.jsonl", ["--save-steps", "2"]),
    "kto": ("kto", "binary.jsonl", []),  # its KL baseline z0 is a mean over every rank's records
}
# Same micro-batches (2 processes x batch 4 vs 1 x batch 4 x accum 2): only the order of float32
# sums differs, and the engines' forward computes the LM head on the whole packed row instead of
# the response positions only: measured max |Δ| after 4 steps <= 2.4e-6.
TIGHT = 1e-5
# Batch 8 pads differently; AdamW turns an absolute gradient error δ of a weight whose gradient
# is near its eps (1e-8) into lr·δ/eps of weight: measured 3.9e-5 for the reward model between
# 1 x batch 8 and 1 x batch 4 x accum 2 (no ranks involved). A real error (a record lost or
# weighted twice) moves many weights by ~lr = 1e-3.
ATOL = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nine_records(src: Path, dst: Path) -> Path:
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:9]))
    return dst


def launch(config: str, jobs: list[dict], workdir: Path, timeout: int = 1800) -> str:
    """Run `jobs` (see worker.py) in 2 processes under `accelerate launch --config_file config`.

    `timeout` only catches a hung launch: on a shared 2-core machine a launch of several jobs
    takes over 10 minutes."""
    spec = workdir / "jobs.json"
    spec.write_text(json.dumps(jobs))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "examples" / "accelerate" / config),
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        str(WORKER),
        str(spec),
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def argv(name: str, data: Path, out: Path, *flags: str) -> list[str]:
    command, _, extra = CASES[name]
    return [command, "--data", str(data), "--output-dir", str(out), *COMMON, *extra, *flags]


def final_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "final" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = ATOL) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        diff = (wa[k] - wb[k]).abs().max().item()
        assert diff <= atol, f"{k}: max |Δ| = {diff:.3g} between {a.name} and {b.name}"


def train_rows(path: Path) -> list[dict]:
    return [r for r in read_metrics(path) if "loss" in r and "learning_rate" in r]
