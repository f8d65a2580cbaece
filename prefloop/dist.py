"""One code path for one process and many: the only module that knows about process groups,
accelerate, DeepSpeed or FSDP (DESIGN principle 5).

A training loop asks `setup(cfg.device)` for a `Dist` and calls the same few methods whether it
runs alone or as one rank of many:

- `prepare(model, optimizer)`: the module the training forward goes through (DDP / FSDP2 /
  DeepSpeed engine under a launcher; the model itself alone) and the optimizer to step.
- `sum(values)`: all-reduced sums (float64), e.g. the records or tokens of an optimizer step, so
  each rank normalises its loss by the step's global count (`loss_scales`).
- `backward(loss, model, last)`: gradient sync only on the last micro-batch of a step.
- `step(model, optimizer, max_grad_norm)`: clip over all ranks / shards and update.
- `reduce_metrics(parts)`: count-weighted means over every rank's micro-batches.
- `is_main`, `barrier`, `gather_object`, `broadcast_object`: rank 0 writes logs and checkpoints
  (and does what must happen once, e.g. ask a teacher); the others wait.
- `full_model(model)`: the whole trained model on rank 0 (gathered from the shards where sharded).
- `trainable_state`, `optimizer_state`, `save_engine_state`, `checkpoint_meta`, `check_resume`:
  checkpoints (below).

The second half of the module is the remote side: calls into other processes with deadlines
and named errors (`with_deadline`, `push_weights_http`, `ray_get`, `WeightSyncError`), and Ray
rollout / reward actors behind the `Generator` and `RewardFn` seams (`RayGenerator`,
`RayReward`, `ray_workers`, `start_ray`).

Alone (no launcher), `Dist` is rank 0 of 1: `sum` returns its input, `backward` is
`loss.backward()`, `prepare` returns its arguments. Nothing else in prefloop branches on the
world size.

Launching: `accelerate launch --config_file examples/accelerate/ddp.yaml -m prefloop.cli dpo ...`
(or `torchrun`). The launcher sets WORLD_SIZE / RANK / LOCAL_RANK and, from the config,
ACCELERATE_USE_FSDP (+ FSDP_*) or ACCELERATE_USE_DEEPSPEED (+ ACCELERATE_DEEPSPEED_*).
`setup` joins the process group through accelerate's `Accelerator` (gloo without CUDA) and
picks the engine from those variables; the engines themselves are torch's DDP (through
accelerate), torch's FSDP2 `fully_shard` (per decoder layer, then the root) and
`deepspeed.initialize` (ZeRO stage from the config), wired here the same way on CPU and GPU,
so what the CPU tests run is what a GPU cluster runs. (accelerate's own FSDP and DeepSpeed
paths refuse CPUs, which would leave those engines untestable without a GPU.)

Gradient arithmetic: DDP, FSDP and DeepSpeed average gradients over ranks (divide the sum by
the world size W). A rank's micro-batch m with count n_m (records or tokens) gets the loss
weight n_m · W / N, N = Σ over every rank's micro-batches of the step (all-reduced), so the
averaged gradient is Σ_m n_m · ∇mean_m / N: the gradient of the full-batch mean, whatever the
split into ranks and micro-batches (`loss_scales`).

Checkpoints: under 1 process, DDP and FSDP2 a checkpoint is gathered: rank 0 writes the whole
trainable weights and a torch optimizer `state_dict()` whose moments are whole tensors (under
FSDP2 each is all-gathered from its shards, one at a time). On resume every rank loads it into
the plain model and optimizer before `prepare`, and `prepare` cuts the moments into the same
shards FSDP2 cuts the weights into; so these checkpoints resume on any of the three engines and
any number of processes. The price: rank 0 holds the weights and both AdamW moments in CPU memory
while it writes. DeepSpeed ZeRO keeps its fp32 master weights and moments in flat per-rank
partitions: its checkpoints add the engine's own files (`engine.save_checkpoint`, one optimizer
partition per rank) next to the gathered weights, and resume only under DeepSpeed with the same
ZeRO stage and number of processes (`check_resume` says so before anything is trained).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ENGINES = ("single", "ddp", "fsdp", "deepspeed")
DEEPSPEED_DIR = "deepspeed"
"""Sub-directory of a checkpoint with DeepSpeed's own files (its tag in `engine.save_checkpoint`)."""


def launched() -> bool:
    """Whether this process was started by a distributed launcher (accelerate launch, torchrun)."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")) > 1
        or _env_flag("ACCELERATE_USE_DEEPSPEED")
        or _env_flag("ACCELERATE_USE_FSDP")
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


class DistError(RuntimeError):
    """A distributed setting prefloop cannot run (named, with what to change)."""


def engine_from_env(world_size: int) -> str:
    """The engine the launcher's config asks for: 'deepspeed', 'fsdp', 'ddp' (several processes) or 'single'."""
    if _env_flag("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if _env_flag("ACCELERATE_USE_FSDP"):
        version = os.environ.get("FSDP_VERSION", "1")
        if version != "2":
            raise DistError(
                f"FSDP version {version}: prefloop runs FSDP2 only (fsdp_version: 2 in the accelerate config)"
            )
        return "fsdp"
    return "ddp" if world_size > 1 else "single"


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
    _skeleton: Any = field(default=None, repr=False)
    _group_flags: Any = field(default=None, repr=False)
    """The optimizer groups' fused/foreach flags before a sharded engine changed them (for checkpoints)."""
    _sum_in_step: bool = False
    """Gradients are summed over ranks in `step` (`prepare(..., sum_in_step=True)`), not by a wrapper."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether weights or optimizer state are split across ranks (FSDP2, DeepSpeed ZeRO)."""
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

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (the others' `obj` is ignored; pass None)."""
        if self.world_size == 1:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of `t` over all ranks (a new tensor on `t`'s device; `t` itself alone)."""
        if self.world_size == 1:
            return t
        out = t.detach().to(self._comm_device(), copy=True)
        torch.distributed.all_reduce(out)
        return out.to(t.device)

    def share(self, n: int) -> tuple[int, int]:
        """[lo, hi): this rank's contiguous share of `n` items (near-equal shares in rank order)."""
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

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

    def prepare(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float = 0.0,
        resume: Path | None = None,
        sum_in_step: bool = False,
    ):
        """(module for the training forward, optimizer) under this engine.

        Call after the weights (and a resumed checkpoint) are loaded: DDP broadcasts rank 0's
        weights, FSDP2 and DeepSpeed shard what they are given. Under FSDP2 the optimizer keeps
        its parameter groups (and so its learning-rate scheduler), rebound to the sharded
        parameters, with any loaded state cut into the same shards; under DeepSpeed the engine's
        optimizer wraps it and, when `resume` is a checkpoint, loads the engine's own files.

        `sum_in_step`: for a loop whose forwards do not go through one module call (the online
        loop: policy, value model, reference and PPO-ptx forwards on each micro-batch) and whose
        loss weights already sum to the step's loss over all ranks. Nothing wraps the model;
        rank 0's weights are broadcast and `step` sums the accumulated gradients over ranks
        first (one collective per optimizer step, as DDP's last backward). DDP engine only.
        """
        if self.engine == "single":
            return model, optimizer
        if sum_in_step:
            if self.engine != "ddp":
                raise DistError(
                    f"this loop runs on one process or under DDP, not under {self.engine}: "
                    "launch it with examples/accelerate/ddp.yaml"
                )
            self._sum_in_step = True
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    torch.distributed.broadcast(tensor, 0)
            return model, optimizer
        if self.engine == "ddp":
            return self.accelerator.prepare_model(model), optimizer
        if self.is_main:  # an empty copy to hold the gathered weights for final/ (see full_model)
            self._skeleton = copy.deepcopy(model).to("meta")
        self._group_flags = [
            {k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups
        ]
        if self.engine == "fsdp":
            return _fully_shard(model, optimizer, self.device, self.world_size), optimizer
        engine, ds_optimizer = _deepspeed(model, optimizer, self.grad_accum, max_grad_norm)
        if resume is not None:
            engine.load_checkpoint(
                str(resume), tag=DEEPSPEED_DIR, load_optimizer_states=True, load_lr_scheduler_states=False
            )
        return engine, ds_optimizer

    def backward(self, loss: torch.Tensor, model: Any, last: bool) -> None:
        """Backward of one micro-batch; gradients are synced across ranks only after the last one."""
        if self.engine == "deepspeed":
            # The boundary is ours (a short last step has fewer micro-batches than grad_accum),
            # and so is the normalisation: no division by gradient_accumulation_steps.
            model.set_gradient_accumulation_boundary(last)
            model.backward(loss, scale_wrt_gas=False)
            return
        if self.engine == "fsdp":
            model.set_requires_gradient_sync(last)
            loss.backward()
            return
        context = (
            self.accelerator.no_sync(model) if self.engine == "ddp" and not last else contextlib.nullcontext()
        )
        with context:
            loss.backward()

    def step(self, model: Any, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> float | None:
        """Clip the synced gradients to `max_grad_norm` (0: no clipping) and update; the norm before clipping."""
        if self.engine == "deepspeed":
            model.step()  # clips to the config's gradient_clipping (= max_grad_norm) inside
            norm = model.get_global_grad_norm()
            return None if norm is None else float(norm)
        if self._sum_in_step:
            _sum_gradients([p for p in model.parameters() if p.requires_grad])
        norm = None
        if max_grad_norm > 0:
            params = [p for p in model.parameters() if p.requires_grad]
            total = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            if hasattr(total, "full_tensor"):  # a DTensor under FSDP2: the norm over every shard
                total = total.full_tensor()
            norm = float(total)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm

    def full_model(self, model: Any) -> Any:
        """The whole trained model on rank 0 (None elsewhere); a collective under FSDP2 / ZeRO-3.

        Sharded engines gather the full weights into the empty copy `prepare` kept, so the
        final save (LoRA merge included) runs on an ordinary module.
        """
        if not self.sharded:
            return self.unwrap(model) if self.is_main else None
        if self.engine == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state: Any = get_model_state_dict(
                model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        else:
            state = _deepspeed_full_state(model)
        if not self.is_main:
            return None
        full = self._skeleton
        full.load_state_dict(state, assign=True)
        base = full.get_base_model() if hasattr(full, "get_base_model") else full
        if hasattr(base, "tie_weights"):
            base.tie_weights()  # assign=True loads tied tensors as two; tie them again
        return full

    def unwrap(self, model: Any) -> Any:
        if self._sum_in_step:
            return model
        if self.engine == "ddp":
            return model.module
        if self.engine == "deepspeed":
            return model.module
        return model

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_meta(self) -> dict[str, Any]:
        """What writes a checkpoint (saved with it; `check_resume` compares it on resume)."""
        meta: dict[str, Any] = {"engine": self.engine, "world_size": self.world_size}
        if self.engine == "deepspeed":
            meta["zero_stage"] = _zero_stage()
        return meta

    def check_resume(self, meta: dict[str, Any], path: Path) -> None:
        """Raise `DistError` when the checkpoint at `path` (written as `meta` says) cannot resume here."""
        written = {"engine": "single", "world_size": 1, **meta}
        if "deepspeed" not in (written["engine"], self.engine):
            return  # gathered checkpoints: any engine, any number of processes
        if written == self.checkpoint_meta():
            return

        def describe(m: dict[str, Any]) -> str:
            if m["engine"] == "deepspeed":
                return f"DeepSpeed ZeRO-{m.get('zero_stage')} on {m['world_size']} processes"
            return f"{m['engine']} on {m['world_size']} process{'es' if m['world_size'] > 1 else ''}"

        raise DistError(
            f"{path}: written by {describe(written)}, resumed by {describe(self.checkpoint_meta())}: "
            "DeepSpeed keeps its optimizer state in per-rank partitions, so its checkpoints resume only "
            "under the same ZeRO stage and number of processes, and a DeepSpeed run resumes only from "
            "those (checkpoints of 1 process, DDP and FSDP2 resume on each other at any size)"
        )

    def trainable_state(self, model: Any) -> dict[str, torch.Tensor] | None:
        """The trainable weights by parameter name, whole and on the CPU, on rank 0 (None elsewhere).

        A collective under FSDP2 and ZeRO-3 (each weight is gathered from its shards in turn).
        """
        module = self.unwrap(model)
        zero3 = self.engine == "deepspeed" and _zero_stage() == 3
        out: dict[str, torch.Tensor] = {}
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if hasattr(p, "full_tensor"):  # an FSDP2 DTensor
                whole = p.full_tensor()
            elif zero3:
                import deepspeed

                with deepspeed.zero.GatheredParameters([p]):
                    whole = p.detach().clone()
            elif not self.is_main:
                continue
            else:
                whole = p
            if self.is_main:
                out[name] = whole.detach().cpu().contiguous()
        return out if self.is_main else None

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The optimizer's `state_dict()` with whole moments, on rank 0 (None elsewhere).

        A collective under FSDP2 (the moments are all-gathered from their shards). None under
        DeepSpeed, which writes its own partitions (`save_engine_state`).
        """
        if self.engine == "deepspeed":
            return None
        if self.engine != "fsdp":
            return optimizer.state_dict() if self.is_main else None
        sd = optimizer.state_dict()
        state = {}
        for index in sorted(sd["state"]):  # the same order on every rank: the gathers pair up
            state[index] = {
                k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu().clone()
                if torch.is_tensor(v)
                else v
                for k, v in sd["state"][index].items()
            }
        if not self.is_main:
            return None
        groups = [{**g, **flags} for g, flags in zip(sd["param_groups"], self._group_flags or [])]
        return {"state": state, "param_groups": groups or sd["param_groups"]}

    def save_engine_state(self, model: Any, directory: Path) -> None:
        """DeepSpeed: every rank writes its optimizer partition into `directory`/deepspeed (a collective).

        No-op for the other engines (their state is in `optimizer_state`).
        """
        if self.engine == "deepspeed":
            model.save_checkpoint(str(directory), tag=DEEPSPEED_DIR, save_latest=False)


def _sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce (sum) the gradients of `params`, one flat buffer per dtype; a missing gradient counts 0."""
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        device = flat.device
        if torch.distributed.get_backend() != "nccl":
            flat = flat.cpu()
        torch.distributed.all_reduce(flat)
        flat = flat.to(device)
        offset = 0
        for p in group:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n


def _param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def _fully_shard(model: Any, optimizer: torch.optim.Optimizer, device: torch.device, world: int):
    """torch FSDP2: one `fully_shard` unit per decoder layer (the model's `_no_split_modules`), then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    groups = _param_names(model, optimizer)
    before = dict(model.named_parameters())
    mesh = init_device_mesh(device.type, (world,))
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    wanted = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    layer_classes = {c for c in wanted.split(",") if c} or set(getattr(base, "_no_split_modules", None) or [])
    for module in list(model.modules()):
        if type(module).__name__ in layer_classes:
            fully_shard(module, mesh=mesh, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
    params = dict(model.named_parameters())
    for group, names in zip(optimizer.param_groups, groups):
        group["params"] = [params[n] for n in names]  # same groups, now the sharded parameters
    _shard_optimizer_state(optimizer, [(before[n], params[n]) for names in groups for n in names])
    for group in optimizer.param_groups:
        if group.get("fused"):
            group["fused"], group["foreach"] = False, True  # no fused kernel for sharded (DTensor) tensors
    # The decoder body and the LM head are one FSDP unit with the root: the split head path
    # of prefloop.models.logps would skip the root's all-gather, so take the whole forward.
    model.prefloop_whole_forward = True
    return model


def _shard_optimizer_state(optimizer: torch.optim.Optimizer, pairs: list[tuple[Any, Any]]) -> None:
    """Move a resumed optimizer's state from each whole parameter to its FSDP2 shard (same placements).

    Every rank holds the whole moments (it loaded the checkpoint) and keeps its own slice: no
    communication. Scalars (AdamW's step) stay as they are.
    """
    from torch.distributed.tensor import distribute_tensor

    for whole, shard in pairs:
        if whole not in optimizer.state:
            continue
        state = optimizer.state.pop(whole)
        optimizer.state[shard] = {
            k: distribute_tensor(
                v.to(shard.device_mesh.device_type), shard.device_mesh, shard.placements, src_data_rank=None
            )
            if torch.is_tensor(v) and v.shape == whole.shape and v.dim() > 0
            else v
            for k, v in state.items()
        }


def _zero_stage() -> int:
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))


def _deepspeed(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_accum: int, max_grad_norm: float
):
    """deepspeed.initialize with the ZeRO stage (and offload) of the accelerate config the launcher exported."""
    try:
        import deepspeed
    except ImportError as exc:
        raise DistError(
            "the accelerate config asks for DeepSpeed, which is not installed: pip install deepspeed"
        ) from exc

    stage = _zero_stage()
    zero: dict[str, Any] = {"stage": stage}
    for key, env in (
        ("offload_optimizer", "OFFLOAD_OPTIMIZER_DEVICE"),
        ("offload_param", "OFFLOAD_PARAM_DEVICE"),
    ):
        where = os.environ.get(f"ACCELERATE_DEEPSPEED_{env}", "none")
        if where not in ("none", ""):
            zero[key] = {"device": where}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    dtype = next(model.parameters()).dtype
    config = {
        "train_micro_batch_size_per_gpu": 1,  # prefloop counts records itself; DeepSpeed needs a number
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # prefloop's AdamW (torch) is the optimizer
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "steps_per_print": 1 << 30,
    }
    for group in optimizer.param_groups:
        if group.get("fused"):
            group["fused"], group["foreach"] = False, True  # ZeRO hands the optimizer flat partitions
    engine, ds_optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    engine.prefloop_whole_forward = True
    return engine, ds_optimizer


def _deepspeed_full_state(engine) -> dict[str, torch.Tensor]:
    if engine.zero_optimization_stage() == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s random streams (dropout, sampling); rank 0 keeps `seed` itself."""
    return seed + 1_000_003 * rank


_ACCELERATOR: dict[bool, Any] = {}


def setup(device: str = "auto", grad_accum: int = 1) -> Dist:
    """This process's `Dist`: rank 0 of 1 unless a launcher started it (see `launched`).

    Under a launcher, accelerate's `Accelerator` joins the process group (gloo without CUDA)
    and gives each rank its local device; the engine comes from the launcher's config
    (`engine_from_env`). `device` is the config's ('auto', 'cpu', 'cuda', ...).
    """
    from prefloop.models.load import resolve_device

    wanted = resolve_device(device)
    if not launched():
        return Dist(device=wanted)
    from accelerate import Accelerator

    cpu = wanted.type == "cpu"
    if cpu not in _ACCELERATOR:  # one per process: accelerate keeps its state process-wide
        _ACCELERATOR[cpu] = Accelerator(cpu=cpu)
    acc = _ACCELERATOR[cpu]
    if not torch.distributed.is_initialized() and acc.num_processes > 1:
        raise DistError("the launcher started several processes but no process group was joined")
    return Dist(
        device=acc.device,
        rank=acc.process_index,
        world_size=acc.num_processes,
        engine=engine_from_env(acc.num_processes),
        accelerator=acc,
        grad_accum=grad_accum,
    )


# =========================================================================== remote engines
#
# Generation and rewards in other processes: a generation server over HTTP, or Ray actors.
# Every call that crosses a process has a deadline and fails with a named error that says
# which endpoint or actor did not answer and what to check, instead of hanging (the failure
# users of other RLHF stacks hit most: a weight sync or a Ray call that waits forever).


class RemoteCallError(RuntimeError):
    """A call to another process (a Ray actor, a generation server) that failed or missed its deadline."""


class WeightSyncError(RemoteCallError):
    """A push of new policy weights to a generator that did not complete within its timeout."""


def with_deadline(fn, timeout_s: float, on_timeout: str, error: type[RemoteCallError] = RemoteCallError):
    """`fn()` in a helper thread; raise `error(on_timeout)` when it has not returned after `timeout_s`.

    The deadline is total (connect, send, wait, receive), unlike a socket's per-operation
    timeout, which a peer that trickles bytes never trips. A call that times out keeps running
    in its daemon thread until its own socket timeout ends it; nothing waits for it.
    """
    import concurrent.futures
    import threading

    result: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            result.set_result(fn())
        except BaseException as exc:
            result.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="prefloop-remote-call").start()
    try:
        return result.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise error(on_timeout) from None


def push_weights_http(
    url: str, weights: dict[str, torch.Tensor], timeout_s: float, target: str = "generator"
) -> None:
    """POST `weights` (safetensors bytes) to a generation server's weight endpoint, within `timeout_s`.

    Raises `WeightSyncError` naming `target`, the URL and what to check when the server does
    not accept them in time, refuses the connection, or answers with an error status.
    """
    import httpx
    from safetensors.torch import save

    body = save({k: v.detach().cpu().contiguous() for k, v in weights.items()})
    size_mb = len(body) / 2**20

    def post():
        return httpx.post(
            url,
            content=body,
            headers={"content-type": "application/octet-stream"},
            timeout=httpx.Timeout(timeout_s),
        )

    hint = "check that the server is up, reachable from this host, and not stuck (its log)"
    try:
        response = with_deadline(
            post,
            timeout_s,
            f"{target}: weight sync to {url} ({size_mb:.1f} MiB) did not complete within {timeout_s:g} s; "
            f"{hint}, or raise the sync timeout for large models",
            WeightSyncError,
        )
    except httpx.HTTPError as exc:
        raise WeightSyncError(
            f"{target}: weight sync to {url} failed ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    if response.status_code >= 400:
        raise WeightSyncError(
            f"{target}: weight sync to {url} answered {response.status_code}: {response.text[:200]}"
        )


def ray_get(
    ref: Any, timeout_s: float, actor: str, what: str, error: type[RemoteCallError] = RemoteCallError
):
    """`ray.get(ref)` within `timeout_s`, or `error` naming the actor and what to check."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        return ray.get(ref, timeout=timeout_s)
    except GetTimeoutError:
        raise error(
            f"{actor}: {what} did not return within {timeout_s:g} s; check `ray status` for the actor's "
            "resources and its log under /tmp/ray/session_latest/logs (a stuck generate, no free CPU/GPU)"
        ) from None
    except RayActorError as exc:
        raise error(f"{actor}: the actor died during {what}: {exc}") from exc


def start_ray(num_cpus: int | None = None, address: str | None = None, timeout_s: float = 120.0) -> None:
    """Join (`address`) or start a local Ray cluster, within `timeout_s` (a start-up hang becomes an error).

    Ray must be initialised on the calling thread (its driver breaks when started from a helper
    thread), so the deadline is a SIGALRM on the main thread (none elsewhere).
    """
    import signal
    import threading

    import ray

    if ray.is_initialized():
        return
    message = (
        f"Ray did not start within {timeout_s:g} s (address={address or 'local'}); check `ray status`, "
        "free ports and /tmp/ray/session_latest/logs"
    )
    on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")

    def expire(signum, frame):
        raise RemoteCallError(message)

    previous = signal.signal(signal.SIGALRM, expire) if on_main else None
    if on_main:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    finally:
        if on_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class _Worker:
    """What a Ray actor runs: an object built by `factory(*args)` in the actor's process, called by name."""

    def __init__(self, factory, *args):
        self.obj = factory(*args)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.obj, method)(*args, **kwargs)

    def score(self, prompts, completions):
        return self.obj(prompts, completions)


def ray_workers(factory, args: tuple = (), n: int = 1, num_cpus: float = 1, num_gpus: float = 0) -> list[Any]:
    """`n` Ray actors, each holding `factory(*args)` (a Generator, a RewardFn, ...) built in its own process."""
    import ray

    actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_Worker)
    return [actor.remote(factory, *args) for _ in range(n)]


@dataclass
class RayGenerator:
    """A `Generator` whose sampling runs in Ray actors (rollout workers), for disaggregated runs.

    Prompts are split into contiguous shares, one per actor; the completions come back in the
    prompt-major order of `Generator.generate`. `update_weights` pushes the new weights to every
    actor and fails with `WeightSyncError` naming the actor that missed `sync_timeout_s`.
    """

    actors: list[Any]
    call_timeout_s: float = 600.0
    sync_timeout_s: float = 120.0

    def generate(self, prompts, num_responses: int = 1, seed: int | None = None):
        n = len(self.actors)
        shares = [list(prompts[i * len(prompts) // n : (i + 1) * len(prompts) // n]) for i in range(n)]
        refs = [
            (i, a.call.remote("generate", share, num_responses, None if seed is None else seed + i))
            for i, (a, share) in enumerate(zip(self.actors, shares))
            if share
        ]
        out, offset = [], 0
        for i, ref in refs:
            for c in ray_get(ref, self.call_timeout_s, f"rollout actor {i}", "generate"):
                c.prompt_index += offset
                out.append(c)
            offset += len(shares[i])
        return out

    def update_weights(self, weights: Any) -> None:
        if isinstance(weights, torch.nn.Module):
            weights = {k: v.detach().cpu() for k, v in weights.state_dict().items()}
        refs = [a.call.remote("update_weights", weights) for a in self.actors]
        for i, ref in enumerate(refs):
            ray_get(
                ref,
                self.sync_timeout_s,
                f"rollout actor {i}",
                "update_weights (weight sync)",
                WeightSyncError,
            )

    def rng_state(self) -> Any:
        refs = [a.call.remote("rng_state") for a in self.actors]
        return [
            ray_get(r, self.call_timeout_s, f"rollout actor {i}", "rng_state") for i, r in enumerate(refs)
        ]

    def set_rng_state(self, state: Any) -> None:
        refs = [a.call.remote("set_rng_state", s) for a, s in zip(self.actors, state)]
        for i, r in enumerate(refs):
            ray_get(r, self.call_timeout_s, f"rollout actor {i}", "set_rng_state")


@dataclass
class RayReward:
    """A `RewardFn` scored in Ray actors (reward workers): completions split across them, scores in order."""

    actors: list[Any]
    call_timeout_s: float = 600.0
    name: str = "ray-reward"

    def __call__(self, prompts, completions) -> list[float]:
        n = len(self.actors)
        bounds = [(i * len(prompts) // n, (i + 1) * len(prompts) // n) for i in range(n)]
        refs = [
            (i, a.score.remote(list(prompts[lo:hi]), list(completions[lo:hi])))
            for i, (a, (lo, hi)) in enumerate(zip(self.actors, bounds))
            if hi > lo
        ]
        scores: list[float] = []
        for i, ref in refs:
            scores.extend(ray_get(ref, self.call_timeout_s, f"reward actor {i}", "score"))
        return scores
