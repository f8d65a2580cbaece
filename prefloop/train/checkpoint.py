"""Checkpoints and RNG state: OUTPUT/checkpoints/step-N holds the trainable weights, the optimizer,
the scheduler, every RNG state and the loop's own extra state, written atomically.

One format for every engine but DeepSpeed: the whole (gathered) trainable weights and a torch
optimizer `state_dict()`, so a checkpoint of 1 process, DDP or FSDP2 resumes on any of them and on
any number of processes. DeepSpeed ZeRO adds its own partitioned files (see `prefloop.dist`)."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefloop.train.config import TrainError

CHECKPOINT_DIR = "checkpoints"


STATE_FILE = "trainer_state.pt"


WEIGHTS_FILE = "trainable.safetensors"


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All RNG states, for checkpoints."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors the optimizer changes: every weight, or only the adapters (and heads) with LoRA."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def checkpoint_paths(output_dir: Path, step: int) -> tuple[Path, Path]:
    """(final directory, temporary directory) of the checkpoint of step `step`."""
    root = output_dir / CHECKPOINT_DIR
    return root / f"step-{step}", root / f".step-{step}.tmp"


def save_checkpoint(
    output_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    limit: int,
    extra: dict[str, Any] | None = None,
    rng_per_rank: list[dict[str, Any]] | None = None,
    engine: dict[str, Any] | None = None,
) -> Path:
    """OUTPUT/checkpoints/step-N: trainable weights, optimizer, scheduler, RNG states, step.

    `weights`: the trainable tensors by parameter name (`trainable_state_dict`, or gathered from
    the shards by `Dist.trainable_state`). `optimizer_state`: a torch optimizer's `state_dict()`
    (None when an engine keeps its own partitioned files, which it has written into the
    temporary directory already). `rng_per_rank`: every process's RNG states of a
    multi-process run (rank order); the writer's own states are always saved as "rng".
    `engine`: what wrote it (`Dist.checkpoint_meta`), checked on resume.
    """
    from safetensors.torch import save_file

    path, tmp = checkpoint_paths(output_dir, step)
    tmp.mkdir(parents=True, exist_ok=True)  # may already hold an engine's own files
    save_file(weights, str(tmp / WEIGHTS_FILE))
    torch.save(
        {
            "step": step,
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "rng_per_rank": rng_per_rank or [],
            "extra": extra or {},
            "engine": engine or {},
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)  # a crash mid-save never leaves a half checkpoint under the final name
    if limit > 0:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).exists()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint into model/optimizer/scheduler and the RNGs; returns its state dict.

    `check(state)` runs before anything is restored (it may refuse the checkpoint). Works on
    the plain model and optimizer, before an engine wraps them (`Dist.prepare` moves the
    optimizer state onto the shards, or loads an engine's own files)."""
    from safetensors.torch import load_file

    state = torch.load(path / STATE_FILE, weights_only=False)
    if check is not None:
        check(state)
    weights = load_file(str(path / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise TrainError(
            f"{path}: checkpoint has weights the model lacks (different model or LoRA setting?): {unknown[:3]}"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    if state["optimizer"] is not None:  # None: an engine's own files (DeepSpeed), loaded by the engine
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state
