"""One training run: the start every loop shares (`begin`, `load_policy`, `prepare_output_dir`,
`start_run`) and its finish (`Run.step_done` per optimizer step, `Run.save_final`).

`Run` holds the optimizer, scheduler, metrics logger, progress bar and checkpoints. Offline
loops give it a `StepSchedule` over their records; the online loop gives it a step count and
the extra state (generator RNG, KL controller, reward normalizer) its checkpoints must carry.

The same calls serve one process and many (`prefloop.dist`): `Run.micro_batches` is this
rank's share of the step, `Run.loss_weights` its micro-batches' weights over the whole step,
`Run.backward` syncs gradients after the last micro-batch, `Run.reduce_metrics` averages over
all ranks, and only rank 0 writes metrics, checkpoints and the final model.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

from prefloop.dist import Dist, DistError, rank_seed, setup
from prefloop.models.load import torch_dtype
from prefloop.train.checkpoint import (
    CHECKPOINT_DIR,
    STATE_FILE,
    checkpoint_paths,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    set_seed,
)
from prefloop.train.config import TrainConfig, TrainError, check_config
from prefloop.train.logs import MetricsLogger, progress_bar, write_json
from prefloop.train.optim import build_optimizer, release_freed_memory_promptly
from prefloop.train.schedule import StepSchedule, lr_lambda


def process(cfg: TrainConfig) -> Dist:
    """This process's place in the run (rank 0 of 1 unless a launcher started it); see prefloop.dist."""
    return setup(cfg.device, cfg.grad_accum)


def begin(cfg: TrainConfig) -> torch.device:
    """The first lines of every loop: check the config, tune the allocator, seed, pick the device.

    Every rank seeds with cfg.seed here, so models, heads and adapters start identical on all
    ranks; `start_run` then gives each rank its own stream (`rank_seed`).
    """
    check_config(cfg)
    release_freed_memory_promptly()
    set_seed(cfg.seed)
    return process(cfg).device


def load_policy(cfg: TrainConfig, device: torch.device) -> tuple[Any, torch.nn.Module]:
    """Tokenizer + causal LM (with LoRA and gradient checkpointing as configured)."""
    from prefloop.models.load import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_causal_lm(cfg.model, dtype=torch_dtype(cfg.dtype))
    return tokenizer, prepare_trainable(model, cfg, "CAUSAL_LM").to(device)


def prepare_trainable(model: PreTrainedModel, cfg: TrainConfig, task_type: str) -> torch.nn.Module:
    """`model` set up for training as `cfg` says: no KV cache, leaner norm and MLP activations,
    packed attention, gradient checkpointing, LoRA of `task_type`."""
    from prefloop.models.lean import lean_activations
    from prefloop.models.load import apply_lora

    model.config.use_cache = False
    lean_activations(model)  # same math, less kept for backward (models.lean)
    if cfg.packing:
        from prefloop.models.packing import enable_packing

        enable_packing(model)  # padded batches still work; packed ones skip padding (models.packing)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora:
            model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
    if cfg.lora:
        model = apply_lora(
            model,
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type=task_type,
        )
    return model


@dataclass
class Run:
    """The mutable parts of one training run that every loop shares."""

    cfg: TrainConfig
    output_dir: Path
    model: torch.nn.Module
    """The model itself (for evaluation, references, checkpoints and the final save)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    logger: MetricsLogger
    start_step: int
    schedule: StepSchedule | None = None
    """The offline loops' data order (None for the online loop, which samples its own data)."""
    extra_state: Callable[[], dict[str, Any]] | None = None
    """Called at each checkpoint: the loop's own state to save with it (generator RNG, controllers)."""
    restored: dict[str, Any] = field(default_factory=dict)
    """The `extra_state` of the checkpoint this run resumed from ({} for a fresh run)."""
    bar: Any = None
    dist: Dist = field(default_factory=lambda: Dist(torch.device("cpu")))
    """This process's rank, world size and gradient engine."""
    train_model: Any = None
    """What the training forward goes through: the engine's wrapper (DDP, FSDP2, DeepSpeed) or the model."""

    def __post_init__(self) -> None:
        if self.train_model is None:
            self.train_model = self.model

    def micro_batches(self, step: int) -> list[list[int]]:
        """Record indices of this rank's micro-batches of optimizer step `step` (offline loops).

        Every rank gets the same number (`StepSchedule.passes`); stand-ins that pad a short
        share weigh 0 in `loss_weights`.
        """
        if self.schedule is None:
            raise TypeError("this run has no record schedule (an online run samples its own data)")
        return self.schedule.padded_micro_batches(step)[0]

    def loss_weights(self, step: int | None, counts: list[float]) -> tuple[list[float], list[float]]:
        """(metric weights, loss scales) of this rank's micro-batches of `step`.

        `counts`: what each micro-batch's mean loss averages over (records, pairs or tokens).
        Stand-ins get weight 0. Scaling each micro-batch's mean loss by its scale before
        `backward` gives the gradient of the mean over the whole step on every rank
        (`Dist.loss_scales`). `step=None` (online loops): every micro-batch is real.
        """
        n_real = len(counts)
        if step is not None and self.schedule is not None:
            n_real = self.schedule.padded_micro_batches(step)[1]
        weights = [float(c) if i < n_real else 0.0 for i, c in enumerate(counts)]
        return weights, self.dist.loss_scales(weights)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """Backward of one micro-batch (already scaled); gradients sync across ranks after the `last`."""
        self.dist.backward(loss, self.train_model, last)

    def reduce_metrics(self, parts: list[tuple[dict[str, float], float]]) -> dict[str, float]:
        """The step's metrics: count-weighted means over every rank's micro-batches."""
        return self.dist.reduce_metrics(parts)

    def apply_gradients(self) -> float | None:
        """Clip the accumulated (rank-synced) gradients, take one optimizer step, clear them.

        Returns the gradient norm before clipping (None when clipping is off). `step_done` calls
        it; a loop that updates several times per logged step (the online loop's minibatches)
        calls it itself and then `step_done(..., apply=False)`.
        """
        norm = self.dist.step(self.train_model, self.optimizer, self.cfg.max_grad_norm)
        return norm if self.cfg.max_grad_norm > 0 else None

    def step_done(
        self, step: int, metrics: dict[str, float], tokens: int, started: float, apply: bool = True
    ) -> None:
        """Finish step `step` (1-based after it): clip and update (unless `apply` is False: the
        caller already did), advance the schedule, log, checkpoint. `tokens` is this rank's count."""
        (total_tokens,) = self.dist.sum([tokens])
        lr = self.scheduler.get_last_lr()[0]
        if apply:
            norm = self.apply_gradients()
            if norm is not None:
                metrics["grad_norm"] = norm
        self.scheduler.step()
        done = step + 1
        logged: dict[str, float] = {
            "loss": metrics.pop("loss", 0.0),  # absent when no micro-batch had an example to weigh
            "step_time_s": time.perf_counter() - started,
            "tokens": int(total_tokens),
            "learning_rate": float(lr),
            **({"epoch": self.schedule.epoch_of(done)} if self.schedule is not None else {}),
            **metrics,
        }
        if done % max(1, self.cfg.logging_steps) == 0 or done == self.total_steps:
            self.logger.log(done, logged)
        if self.cfg.save_steps > 0 and done % self.cfg.save_steps == 0 and done < self.total_steps:
            self.save_checkpoint(done)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{logged['loss']:.4f}")

    def save_checkpoint(self, done: int) -> Path | None:
        """OUTPUT/checkpoints/step-`done` with the loop's extra state; all ranks take part and wait.

        Rank 0 writes the whole trainable weights and optimizer state (gathered from the shards
        under FSDP2 and ZeRO-3); under DeepSpeed every rank also writes its optimizer partition
        (`Dist.save_engine_state`). Returns the directory on rank 0, None elsewhere.
        """
        extra = self.extra_state() if self.extra_state is not None else {}
        if self.schedule is not None:
            extra = {"epoch": self.schedule.epoch_of(done), **extra}
        rngs = self.dist.gather_object(rng_state())
        weights = self.dist.trainable_state(self.train_model)
        optimizer_state = self.dist.optimizer_state(self.optimizer)
        _, tmp = checkpoint_paths(self.output_dir, done)
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-save
            tmp.mkdir(parents=True)
        self.dist.barrier()
        self.dist.save_engine_state(self.train_model, tmp)
        self.dist.barrier()
        path = None
        if self.dist.is_main:
            assert weights is not None
            path = save_checkpoint(
                self.output_dir,
                done,
                weights,
                optimizer_state,
                self.scheduler,
                self.cfg.save_total_limit,
                extra,
                rng_per_rank=rngs,
                engine=self.dist.checkpoint_meta(),
            )
        self.dist.barrier()  # no rank runs ahead of (or dies before) a complete checkpoint
        return path

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """OUTPUT/`name` (rank 0 only)."""
        if self.dist.is_main:
            write_json(self.output_dir / name, data)

    def save_final(self, tokenizer: Any) -> Path:
        """OUTPUT/final (merged when LoRA), OUTPUT/adapter and the run report, written by rank 0; all ranks wait.

        Training is over (no checkpoint follows the last step), so the optimizer's moments, two
        more copies of every trainable weight, are dropped first: saving (which may copy weights)
        and the report's figure then do not add to the process's peak memory."""
        if isinstance(self.optimizer, torch.optim.Optimizer):  # DeepSpeed's engine keeps its own
            self.optimizer.state.clear()
        if self.dist.engine != "deepspeed":  # the engine keeps (and frees) its own partitioned gradients
            self.train_model.zero_grad(set_to_none=True)
        self.model.eval()
        full = self.dist.full_model(self.train_model)  # gathered from the shards on rank 0 (a collective)
        if full is not None:
            save_final(full, tokenizer, self.output_dir)
        self.dist.barrier()
        return self.output_dir / "final"

    def due_for_eval(self, step: int) -> bool:
        done = step + 1
        return self.cfg.eval_steps > 0 and done % self.cfg.eval_steps == 0 and done < self.total_steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.logger.close()


def prepare_output_dir(cfg: TrainConfig) -> Path:
    """Create output_dir and write config.yaml (rank 0); a fresh (not resumed) run clears old checkpoints."""
    from prefloop.config import save_yaml

    dist = process(cfg)
    out = Path(cfg.output_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not (cfg.resume or cfg.resume_from) and (out / CHECKPOINT_DIR).exists():
            shutil.rmtree(out / CHECKPOINT_DIR)  # stale checkpoints of an earlier run would mislead --resume
        save_yaml(cfg, out / "config.yaml")
    dist.barrier()
    return out


def start_run(
    cfg: TrainConfig,
    output_dir: Path,
    model: torch.nn.Module,
    desc: str,
    *,
    num_records: int | None = None,
    total_steps: int | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    shards_rollouts: bool = False,
) -> Run:
    """Optimizer, scheduler, logger and progress bar for a run; restores a checkpoint on resume.

    Offline loops pass `num_records` (the step count follows from epochs / max_steps and the
    batch); the online loop passes `total_steps` and its `extra_state`. On resume the
    checkpoint's extra state is in `Run.restored`. `shards_rollouts`: the loop splits its own
    samples across ranks and weighs their losses over the whole step (the online loop); it then
    runs under DDP with gradients summed in the optimizer step (`Dist.prepare`).
    """
    dist = process(cfg)
    schedule = None
    if num_records is not None:
        if num_records == 0:
            raise TrainError(f"{cfg.data}: no training records")
        schedule = StepSchedule(
            num_records,
            cfg.batch_size,
            cfg.grad_accum,
            cfg.seed,
            cfg.epochs,
            cfg.max_steps,
            rank=dist.rank,
            world_size=dist.world_size,
        )
        total_steps = schedule.total_steps
    if total_steps is None or total_steps < 1:
        raise TrainError("a run needs num_records or a positive total_steps")
    if schedule is None and dist.world_size > 1 and not shards_rollouts:
        # A loop that samples its own data without splitting it across ranks would train W
        # copies on the same samples. Refuse instead.
        raise TrainError(
            f"{desc} runs in one process (this launch has {dist.world_size}); "
            "launch it without accelerate / torchrun"
        )
    if shards_rollouts and dist.world_size > 1 and dist.engine != "ddp":
        raise TrainError(
            f"{desc} runs on one process or under DDP, not under {dist.engine}: "
            "launch it with examples/accelerate/ddp.yaml"
        )
    optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_scheduler, cfg.warmup_steps, total_steps)
    )
    start = 0
    checkpoint = None
    restored: dict[str, Any] = {}
    if cfg.resume_from:
        checkpoint = Path(cfg.resume_from)
        if not (checkpoint / STATE_FILE).exists():
            raise TrainError(f"{checkpoint}: not a checkpoint directory (no {STATE_FILE})")
    elif cfg.resume:
        found = list_checkpoints(output_dir)
        checkpoint = found[-1] if found else None
        if checkpoint is None:
            print(
                f"resume: no checkpoint in {output_dir / CHECKPOINT_DIR}; starting from step 0",
                file=sys.stderr,
            )
    set_seed(rank_seed(cfg.seed, dist.rank))  # each rank its own dropout / sampling stream
    if checkpoint is not None:
        where = checkpoint

        def check(state: dict[str, Any]) -> None:
            try:
                dist.check_resume(state.get("engine") or {}, where)
            except DistError as exc:
                raise TrainError(str(exc)) from None

        state = load_checkpoint(checkpoint, model, optimizer, scheduler, check)
        start, restored = int(state["step"]), dict(state.get("extra") or {})
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        if len(per_rank) == dist.world_size:
            set_rng_state(per_rank[dist.rank])
        else:  # resumed on another world size: fresh per-rank streams, still a function of (seed, step)
            set_seed(rank_seed(cfg.seed + start, dist.rank))
        if dist.is_main:
            print(f"resume: continuing from {checkpoint} (step {start})", file=sys.stderr)
    train_model, optimizer = dist.prepare(
        model, optimizer, cfg.max_grad_norm, resume=checkpoint, sum_in_step=shards_rollouts
    )
    logger = MetricsLogger(
        output_dir,
        cfg.report_to_tensorboard,
        resume_step=start if checkpoint else None,
        enabled=dist.is_main,
        report_to=(cfg.report_to or ()) if dist.is_main else (),
        params=dataclasses.asdict(cfg),
    )
    bar = progress_bar(total_steps, start, desc, enabled=dist.is_main)
    return Run(
        cfg,
        output_dir,
        model,
        optimizer,
        scheduler,
        total_steps,
        logger,
        start,
        schedule=schedule,
        extra_state=extra_state,
        restored=restored,
        bar=bar,
        dist=dist,
        train_model=train_model,
    )


def save_final(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> Path:
    """OUTPUT/final (merged when LoRA), OUTPUT/adapter, and OUTPUT/report.html of the finished run (one process; see `Run.save_final`)."""
    from prefloop.models.load import save_final as _save_final
    from prefloop.train.report import write_run_report

    model.eval()
    _save_final(model, tokenizer, output_dir)
    write_run_report(output_dir)
    return output_dir / "final"
