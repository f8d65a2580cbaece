"""One code path for one process and many: the only module that knows about process groups,
accelerate, DeepSpeed or FSDP (DESIGN principle 5).

A training loop asks `setup(cfg.device)` for a `Dist` and calls the same few methods whether it
runs alone or as one rank of many:

- `prepare(model, optimizer)`: the module the training forward goes through (DDP / FSDP2 /
  DeepSpeed engine under a launcher; the model itself alone) and the optimizer to step.
- `sum(values)`: all-reduced sums (float64), e.g. the records or tokens of an optimizer step, so
  each rank normalises its loss by the step's global count (`loss_scales`).
- `backward(loss, model, last)`: gradient sync only on the last micro-batch of a step.
- `clip_grad_norm`, `optimizer_step`: the engine's own clipping and stepping.
- `reduce_metrics(parts)`: count-weighted means over every rank's micro-batches.
- `is_main`, `barrier`, `gather_object`: rank 0 writes logs and checkpoints; the others wait.
- `full_state_dict(model)`: the whole model's weights (gathered from shards where sharded).

Alone (no launcher), `Dist` is rank 0 of 1: `sum` returns its input, `backward` is
`loss.backward()`, `prepare` returns its arguments. Nothing else in prefloop branches on the
world size.

Launching: `accelerate launch --config_file examples/accelerate/ddp.yaml -m prefloop.cli dpo ...`
(or `torchrun`); the launcher sets WORLD_SIZE / RANK / LOCAL_RANK and, for DeepSpeed and FSDP,
ACCELERATE_USE_DEEPSPEED / ACCELERATE_USE_FSDP, which `setup` reads through accelerate's
`Accelerator`. On machines without CUDA the process group uses gloo.

Gradient arithmetic: DDP, FSDP and DeepSpeed average gradients over ranks (divide the sum by
the world size W). A rank's micro-batch m with count n_m (records or tokens) gets the loss
weight n_m · W / N, N = Σ over every rank's micro-batches of the step (all-reduced), so the
averaged gradient is Σ_m n_m · ∇mean_m / N: the gradient of the full-batch mean, whatever the
split into ranks and micro-batches (`loss_scales`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

ENGINES = ("single", "ddp", "fsdp", "deepspeed")


def launched() -> bool:
    """Whether this process was started by a distributed launcher (accelerate launch, torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    return any(
        os.environ.get(name, "false").lower() == "true"
        for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")
    )


@dataclass
class Dist:
    """This process's place in the run: rank, world size, device and the engine that syncs gradients."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    engine: str = "single"
    """'single' (one process), 'ddp', 'fsdp' (FSDP2) or 'deepspeed' (ZeRO stage from the config)."""
    accelerator: Any = field(default=None, repr=False)
    grad_accum: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether weights or optimizer state are split across ranks (FSDP, DeepSpeed ZeRO)."""
        return self.engine in ("fsdp", "deepspeed")

    # ------------------------------------------------------------------ collectives

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (float64; exact for counts)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ loss and metrics

    def loss_scales(self, counts: Sequence[float]) -> list[float]:
        """Loss weight of each of this rank's micro-batches: n_m · W / N (see the module notes).

        `counts` are the records (or tokens) each micro-batch's mean loss averages over; N is
        their sum over all ranks. The weights make the engines' rank-averaged gradient equal to
        the gradient of the mean over the whole step, as one process computing it alone.
        """
        (total,) = self.sum([sum(counts)])
        if total <= 0:
            return [0.0 for _ in counts]
        return [float(c) * self.world_size / total for c in counts]

    def reduce_metrics(self, parts: Sequence[tuple[dict[str, float], float]]) -> dict[str, float]:
        """Count-weighted mean per key over every rank's (metrics, count) parts.

        Keys a rank lacks count with weight 0 there; the result is what one process holding
        all the parts would compute with `schedule.weighted_metrics`.
        """
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        for metrics, w in parts:
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value) * w
                weights[key] = weights.get(key, 0.0) + w
        keys = sorted(set().union(*self.gather_object(sorted(sums)))) if self.world_size > 1 else sorted(sums)
        totals = self.sum([sums.get(k, 0.0) for k in keys] + [weights.get(k, 0.0) for k in keys])
        n = len(keys)
        return {k: totals[i] / totals[n + i] for i, k in enumerate(keys) if totals[n + i] > 0}

    # ------------------------------------------------------------------ model and steps

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """(module for the training forward, optimizer to step) under this engine.

        Call after the weights (and a resumed checkpoint) are loaded: DDP broadcasts rank 0's
        weights, FSDP2 and DeepSpeed shard what they are given.
        """
        if self.accelerator is None:
            return model, optimizer
        if self.engine == "ddp":
            return self.accelerator.prepare_model(model), optimizer
        if self.engine == "deepspeed":
            plugin = self.accelerator.state.deepspeed_plugin
            plugin.deepspeed_config["gradient_accumulation_steps"] = self.grad_accum
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1  # counts are ours; any value > 0
        wrapped, opt = self.accelerator.prepare(model, optimizer)
        return wrapped, opt

    def backward(self, loss: torch.Tensor, model: torch.nn.Module, last: bool) -> None:
        """Backward of one micro-batch; gradients are synced across ranks only after the last one."""
        if self.accelerator is None:
            loss.backward()
            return
        if self.engine == "deepspeed":
            # DeepSpeed divides by its gradient_accumulation_steps (= grad_accum); our scales
            # already normalise over the step, so undo it. The engine steps on the last one.
            self.accelerator.gradient_state._set_sync_gradients(last)
            self.accelerator.backward(loss * self.grad_accum)
            return
        context = contextlib.nullcontext() if last else self.accelerator.no_sync(model)
        with context:
            loss.backward()

    def clip_grad_norm(self, model: torch.nn.Module, max_norm: float) -> float | None:
        """Clip the synced gradients to `max_norm` (over the whole model, every shard); returns the norm before."""
        params = [p for p in model.parameters() if p.requires_grad]
        if self.accelerator is None:
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        norm = self.accelerator.clip_grad_norm_(params, max_norm)
        return None if norm is None else float(norm)

    def full_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """All weights of the (possibly sharded) `model` on every rank; a collective under FSDP/ZeRO-3."""
        if self.accelerator is None:
            return model.state_dict()
        return self.accelerator.get_state_dict(model)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.accelerator is None:
            return model
        return self.accelerator.unwrap_model(model)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s random streams (dropout, sampling); rank 0 keeps `seed` itself."""
    return seed + 1_000_003 * rank


_ACCELERATOR: dict[tuple, Any] = {}


def setup(device: str = "auto", grad_accum: int = 1) -> Dist:
    """This process's `Dist`: rank 0 of 1 unless a launcher started it (see `launched`).

    Under a launcher, accelerate's `Accelerator` joins the process group (gloo without CUDA)
    and reads the engine from the launcher's environment (DDP, FSDP2, DeepSpeed ZeRO-2/3).
    `device` is the config's ('auto', 'cpu', 'cuda', ...); each rank gets its local device.
    """
    from prefloop.models.load import resolve_device

    wanted = resolve_device(device)
    if not launched():
        return Dist(device=wanted)
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    cpu = wanted.type == "cpu"
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    key = (cpu, grad_accum if deepspeed else 1)
    if key not in _ACCELERATOR:
        # DeepSpeed owns the accumulation boundary; everywhere else our scales do it, so the
        # Accelerator must not divide the loss again (gradient_accumulation_steps=1).
        _ACCELERATOR[key] = Accelerator(cpu=cpu, gradient_accumulation_steps=key[1])
    acc = _ACCELERATOR[key]
    kind = acc.distributed_type
    if kind == DistributedType.DEEPSPEED:
        engine = "deepspeed"
    elif kind == DistributedType.FSDP:
        if not acc.is_fsdp2:
            raise RuntimeError("prefloop supports FSDP2 only: set fsdp_version: 2 in the accelerate config")
        engine = "fsdp"
    elif acc.num_processes > 1:
        engine = "ddp"
    else:
        engine = "single"
    return Dist(
        device=acc.device,
        rank=acc.process_index,
        world_size=acc.num_processes,
        engine=engine,
        accelerator=acc if engine != "single" else None,
        grad_accum=grad_accum,
    )
