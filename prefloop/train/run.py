"""One training run: the start every loop shares (`begin`, `load_policy`, `prepare_output_dir`,
`start_run`) and its finish (`Run.step_done` per optimizer step, `save_final`).

`Run` holds the optimizer, scheduler, metrics logger, progress bar and checkpoints. Offline
loops give it a `StepSchedule` over their records; the online loop gives it a step count and
the extra state (generator RNG, KL controller, reward normalizer) its checkpoints must carry.
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

from prefloop.models.load import resolve_device, torch_dtype
from prefloop.train.checkpoint import (
    CHECKPOINT_DIR,
    STATE_FILE,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_seed,
)
from prefloop.train.config import TrainConfig, TrainError, check_config
from prefloop.train.logs import MetricsLogger, progress_bar
from prefloop.train.optim import build_optimizer, release_freed_memory_promptly
from prefloop.train.schedule import StepSchedule, lr_lambda


def begin(cfg: TrainConfig) -> torch.device:
    """The first lines of every loop: check the config, tune the allocator, seed, pick the device."""
    check_config(cfg)
    release_freed_memory_promptly()
    set_seed(cfg.seed)
    return resolve_device(cfg.device)


def load_policy(cfg: TrainConfig, device: torch.device) -> tuple[Any, torch.nn.Module]:
    """Tokenizer + causal LM (with LoRA and gradient checkpointing as configured)."""
    from prefloop.models.load import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_causal_lm(cfg.model, dtype=torch_dtype(cfg.dtype))
    return tokenizer, prepare_trainable(model, cfg, "CAUSAL_LM").to(device)


def prepare_trainable(model: PreTrainedModel, cfg: TrainConfig, task_type: str) -> torch.nn.Module:
    """`model` set up for training as `cfg` says: no KV cache, packed attention, gradient checkpointing,
    LoRA of `task_type`."""
    from prefloop.models.load import apply_lora

    model.config.use_cache = False
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

    def apply_gradients(self) -> float | None:
        """Clip the accumulated gradients, take one optimizer step, clear them.

        Returns the gradient norm before clipping (None when clipping is off). `step_done` calls
        it; the online loop calls it once per minibatch and `step_done(..., apply=False)` once
        per rollout, so the learning-rate schedule, logging and checkpoints count rollouts.
        """
        norm = None
        if self.cfg.max_grad_norm > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def step_done(
        self, step: int, metrics: dict[str, float], tokens: int, started: float, apply: bool = True
    ) -> None:
        """Finish step `step` (1-based after it): clip and update (unless `apply` is False: the
        caller already did), advance the schedule, log, checkpoint."""
        lr = self.scheduler.get_last_lr()[0]
        if apply:
            norm = self.apply_gradients()
            if norm is not None:
                metrics["grad_norm"] = norm
        self.scheduler.step()
        done = step + 1
        logged: dict[str, float] = {
            "loss": metrics.pop("loss"),
            "step_time_s": time.perf_counter() - started,
            "tokens": int(tokens),
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

    def save_checkpoint(self, done: int) -> Path:
        """OUTPUT/checkpoints/step-`done` with the loop's extra state."""
        extra = self.extra_state() if self.extra_state is not None else {}
        if self.schedule is not None:
            extra = {"epoch": self.schedule.epoch_of(done), **extra}
        return save_checkpoint(
            self.output_dir,
            done,
            self.model,
            self.optimizer,
            self.scheduler,
            self.cfg.save_total_limit,
            extra,
        )

    def micro_batches(self, step: int) -> list[list[int]]:
        """Record indices of each micro-batch of optimizer step `step` (offline loops)."""
        if self.schedule is None:
            raise TypeError("this run has no record schedule (an online run samples its own data)")
        return self.schedule.micro_batches(step)

    def due_for_eval(self, step: int) -> bool:
        done = step + 1
        return self.cfg.eval_steps > 0 and done % self.cfg.eval_steps == 0 and done < self.total_steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.logger.close()


def prepare_output_dir(cfg: TrainConfig) -> Path:
    """Create output_dir and write config.yaml; a fresh (not resumed) run clears old checkpoints."""
    from prefloop.config import save_yaml

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (cfg.resume or cfg.resume_from) and (out / CHECKPOINT_DIR).exists():
        shutil.rmtree(out / CHECKPOINT_DIR)  # stale checkpoints of an earlier run would mislead --resume
    save_yaml(cfg, out / "config.yaml")
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
) -> Run:
    """Optimizer, scheduler, logger and progress bar for a run; restores a checkpoint on resume.

    Offline loops pass `num_records` (the step count follows from epochs / max_steps and the
    batch); the online loop passes `total_steps` and its `extra_state`. On resume the
    checkpoint's extra state is in `Run.restored`.
    """
    schedule = None
    if num_records is not None:
        if num_records == 0:
            raise TrainError(f"{cfg.data}: no training records")
        schedule = StepSchedule(
            num_records, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.epochs, cfg.max_steps
        )
        total_steps = schedule.total_steps
    if total_steps is None or total_steps < 1:
        raise TrainError("a run needs num_records or a positive total_steps")
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
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        start, restored = int(state["step"]), dict(state.get("extra") or {})
        print(f"resume: continuing from {checkpoint} (step {start})", file=sys.stderr)
    logger = MetricsLogger(
        output_dir,
        cfg.report_to_tensorboard,
        resume_step=start if checkpoint else None,
        report_to=cfg.report_to or (),
        params=dataclasses.asdict(cfg),
    )
    bar = progress_bar(total_steps, start, desc)
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
    )


def save_final(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> Path:
    """OUTPUT/final (merged when LoRA), OUTPUT/adapter, and OUTPUT/report.html of the finished run."""
    from prefloop.models.load import save_final as _save_final
    from prefloop.train.report import write_run_report

    model.eval()
    _save_final(model, tokenizer, output_dir)
    write_run_report(output_dir)
    return output_dir / "final"
