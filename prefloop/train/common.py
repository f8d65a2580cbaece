"""Shared pieces of the training loops: config fields, data order, optimizer, logging, checkpoints.

Every loop (sft.py, reward_model.py, preference.py) is a plain `for step in ...` written in its
own file; what is the same for all of them lives here as small functions:

- `TrainConfig`: the fields every command has (model, data, batch, schedule, LoRA, logging,
  checkpoints, resume). Each loop's config subclasses it and adds its own fields.
- `StepSchedule`: which records go into which micro-batch of which optimizer step. The order
  is a pure function of (seed, epoch, step), so a resumed run sees exactly the batches an
  uninterrupted run would have seen without storing any iterator state.
- `accumulation_scale`: the weight of one micro-batch's mean loss so that an accumulated step
  has the loss (and gradient) of the full batch.
- `response_logps`: per-sequence log-probabilities of the response tokens, computing the LM
  head only at response positions (chunked, recomputed in backward) instead of full logits.
- `Run`: optimizer + scheduler + metrics logger + progress bar + checkpoints for one run;
  `Run.step_done` ends an optimizer step (clip, step, log, save).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from prefloop.models.load import resolve_device, torch_dtype

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "trainable.safetensors"


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Fields shared by every training command (each command's config adds its own)."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Model to start from: 'default' (embedded SmolLM2-135M-Instruct), 'tiny' (test model), a local path or a hub id."""
    data: str = ""
    """Training data: a .jsonl/.json/.parquet file, a HF datasets directory, or a folder of such files."""
    output_dir: str = "outputs/run"
    """Where final/, checkpoints/, metrics.jsonl and config.yaml are written."""
    max_steps: int = -1
    """Number of optimizer steps; -1 means run `epochs` passes over the data."""
    epochs: int = 1
    """Passes over the training data when max_steps is -1."""
    batch_size: int = 8
    """Records per micro-batch (one forward/backward pass)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; the effective batch is batch_size * grad_accum."""
    learning_rate: float = 1e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norm weights)."""
    warmup_steps: int = 0
    """Steps of linear warmup from 0 to the peak learning rate."""
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Learning-rate decay after warmup: linear or cosine to 0, or constant."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold; 0 disables clipping."""
    max_length: int = 512
    """Maximum tokens of prompt + response; longer sequences are truncated (prompt end and response start kept)."""
    max_prompt_length: int = 256
    """Maximum prompt tokens (the prompt's end is kept)."""
    seed: int = 0
    """Seed for initialisation, data order, held-out split and dropout."""
    lora: bool = False
    """Train LoRA adapters instead of all weights (final/ is merged, adapter/ is kept)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch."""
    lora_target_modules: list[str] | None = None
    """Module names to adapt (default: the model family's attention and MLP projections)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights' dtype (float32 on CPU)."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."""
    logging_steps: int = 1
    """Write a line to metrics.jsonl every N optimizer steps."""
    save_steps: int = 500
    """Save a checkpoint every N optimizer steps (0: only the final model)."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints (oldest deleted first); 0 keeps all."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir (same result as an uninterrupted run)."""
    resume_from: str | None = None
    """Continue from this checkpoint directory (implies resume)."""
    eval_fraction: float = 0.0
    """Share of the data held out for evaluation (seeded split); ignored when eval_data is set."""
    eval_data: str | None = None
    """Separate evaluation data (same formats as data)."""
    eval_steps: int = 0
    """Evaluate every N optimizer steps (0: only at the end)."""
    report_to_tensorboard: Literal["auto", "yes", "no"] = "auto"
    """Also log to TensorBoard under output_dir/tensorboard ('auto': when tensorboard is installed)."""


class TrainError(ValueError):
    """A run that cannot start as configured (no records, a checkpoint of another model, ...)."""


def check_config(cfg: TrainConfig) -> None:
    """Reject values that cannot work before any model is loaded (one-line errors, exit code 2)."""
    from prefloop.config import ConfigError

    problems = []
    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        problems.append("batch_size and grad_accum must be >= 1")
    if cfg.max_steps == 0 or (cfg.max_steps < 0 and cfg.epochs < 1):
        problems.append("max_steps must be > 0, or -1 with epochs >= 1")
    if cfg.max_prompt_length >= cfg.max_length:
        problems.append(
            f"max_prompt_length ({cfg.max_prompt_length}) must be smaller than max_length "
            f"({cfg.max_length}) so the response keeps at least one token"
        )
    if not 0.0 <= cfg.eval_fraction < 1.0:
        problems.append(f"eval_fraction must be in [0, 1), got {cfg.eval_fraction}")
    if cfg.learning_rate <= 0:
        problems.append(f"learning_rate must be > 0, got {cfg.learning_rate}")
    if problems:
        raise ConfigError("; ".join(problems))


def run_cli(cls: type, argv: list[str], command: str, train: Callable[[Any], Path]) -> None:
    """The body of every command's `main`: parse the config, train, turn bad input into exit 2."""
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.io import DataError
    from prefloop.models.load import ModelLoadError

    cfg = parse_args(cls, argv, prog=f"prefloop {command}", description=cls.__doc__)
    try:
        out = train(cfg)
    except (DataError, ConfigError, ModelLoadError, TrainError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f"done: {out}")


# --------------------------------------------------------------------------- determinism


def begin(cfg: TrainConfig) -> torch.device:
    """The first lines of every loop: check the config, tune the allocator, seed, pick the device."""
    check_config(cfg)
    release_freed_memory_promptly()
    set_seed(cfg.seed)
    return resolve_device(cfg.device)


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


def split_eval(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of range(n) into (train, eval) indices; eval gets round(n * fraction), at least 1 if > 0."""
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    n_eval = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return sorted(order[n_eval:]), sorted(order[:n_eval])


@dataclass
class StepSchedule:
    """Which records each optimizer step trains on.

    Epoch e visits the records in `randperm(n, seed + e)` order, cut into effective batches of
    batch_size * grad_accum (the last one may be smaller), each cut into micro-batches of
    batch_size. The order depends only on (seed, epoch), not on batch_size or grad_accum, so
    batch 4 x accum 1 and batch 2 x accum 2 see the same records per step, and a resumed run
    recomputes the position from the step number alone.
    """

    num_records: int
    batch_size: int
    grad_accum: int
    seed: int
    epochs: int = 1
    max_steps: int = -1
    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False, init=False)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_records / (self.batch_size * self.grad_accum))

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps > 0 else self.epochs * self.steps_per_epoch

    def epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._orders = {epoch: torch.randperm(self.num_records, generator=gen).tolist()}
        return self._orders[epoch]

    def micro_batches(self, step: int) -> list[list[int]]:
        """Record indices of each micro-batch of optimizer step `step` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        eff = self.batch_size * self.grad_accum
        chunk = self.epoch_order(epoch)[k * eff : (k + 1) * eff]
        return [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch


def accumulation_scale(micro_count: float, total_count: float) -> float:
    """Weight of a micro-batch's mean loss inside an accumulated optimizer step.

    With the step's examples (or tokens) split into micro-batches m of count n_m (N = Σ n_m),
    Σ_m mean_m · n_m / N = (Σ over all items) / N = the full-batch mean. Dividing each
    micro-batch by the number of micro-batches instead would weight a short last micro-batch
    (or one with few response tokens) as much as a full one.
    """
    if total_count <= 0:
        return 0.0
    return float(micro_count) / float(total_count)


def weighted_metrics(parts: Sequence[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Combine per-micro-batch metrics into the step's: a weighted mean per key (weights = counts)."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for metrics, w in parts:
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * w
            weights[key] = weights.get(key, 0.0) + w
    return {k: sums[k] / weights[k] for k in sums if weights[k] > 0}


def ranked_table(
    flat: torch.Tensor, items: Sequence[dict]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-response values of ranked items, flat [Σ K_i] in item order -> (values [b, K_max] with 0
    at padding, mask [b, K_max], ranks [b, K_max]); each item has "seqs" (K_i of them) and "ranks"."""
    k_max = max(len(item["seqs"]) for item in items)
    shape = (len(items), k_max)
    table = flat.new_zeros(shape)
    mask = torch.zeros(shape, dtype=torch.bool, device=flat.device)
    ranks = torch.zeros(shape, dtype=torch.long, device=flat.device)
    pos = 0
    for i, item in enumerate(items):
        k = len(item["seqs"])
        table[i, :k] = flat[pos : pos + k]
        mask[i, :k] = True
        ranks[i, :k] = torch.tensor(item["ranks"])
        pos += k
    return table, mask, ranks


# --------------------------------------------------------------------------- model pieces


def load_policy(cfg: TrainConfig, device: torch.device):
    """Tokenizer + causal LM (with LoRA and gradient checkpointing as configured)."""
    from prefloop.models.load import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_causal_lm(cfg.model, dtype=torch_dtype(cfg.dtype))
    return tokenizer, prepare_trainable(model, cfg, "CAUSAL_LM").to(device)


def prepare_trainable(model, cfg: TrainConfig, task_type: str):
    """`model` set up for training as `cfg` says: no KV cache, gradient checkpointing, LoRA of `task_type`."""
    from prefloop.models.load import apply_lora

    model.config.use_cache = False
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


def _split_lm(model) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(decoder body, LM head) of a causal LM, or None when the head is not a plain linear map."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None  # logits are post-processed after the head: use the model's own forward
    head = base.get_output_embeddings()
    body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if head is None or body is None or body is base:
        return None
    return body, head


def _head_logps(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def response_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
    chunk_tokens: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(response | prompt) per sequence [B], response token counts [B]).

    Token t is predicted from position t−1. The LM head runs only on the hidden states that
    predict response tokens, in chunks of `chunk_tokens`, each recomputed in the backward pass
    (activation checkpointing), so no [B, T, V] logits tensor is ever held: the peak extra memory
    is one [chunk_tokens, V] block. `average=True` returns the mean log-prob per response token.
    """
    target_mask = response_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    parts = _split_lm(model)
    if parts is None:
        from prefloop.losses import token_logps

        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        tok = token_logps(logits[:, :-1].float(), input_ids[:, 1:])[target_mask]
    else:
        body, head = parts
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        picked = hidden[:, :-1][target_mask]
        chunks = []
        for i in range(0, picked.shape[0], chunk_tokens):
            h, t = picked[i : i + chunk_tokens], targets[i : i + chunk_tokens]
            if torch.is_grad_enabled() and h.requires_grad:
                chunks.append(torch.utils.checkpoint.checkpoint(_head_logps, head, h, t, use_reentrant=False))
            else:
                chunks.append(_head_logps(head, h, t))
        tok = torch.cat(chunks) if chunks else picked.new_zeros(0, dtype=torch.float32)
    rows = target_mask.nonzero()[:, 0]
    sums = torch.zeros(input_ids.shape[0], dtype=tok.dtype, device=tok.device).index_add(0, rows, tok)
    counts = target_mask.sum(dim=1)
    if average:
        sums = sums / counts.clamp_min(1)
    return sums, counts


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


# --------------------------------------------------------------------------- optimizer


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW on trainable parameters; no weight decay on biases and norm weights (1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    params = decay + no_decay
    # The fused kernel updates all tensors in one pass: 1.5 CPU s per step on SmolLM2-135M
    # instead of 4.6 s for the per-tensor loop (benchmarks/README.md). Same math.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, fused=fused)


def release_freed_memory_promptly() -> None:
    """Ask glibc to give large freed blocks back to the OS at once (no-op elsewhere).

    glibc keeps freed heap memory for reuse by default, so a step's peak RSS also counts the
    dead activations of the step before. Serving blocks of 64 KiB and more with mmap and
    keeping no trim reserve returns them on free (benchmarks/README.md: -19% peak RSS for full
    DPO on SmolLM2-135M, -38% with LoRA). Affects only allocations made after the call.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers from <malloc.h>
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 0)


def lr_lambda(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer step s (0-based)."""

    def factor(s: int) -> float:
        if warmup_steps > 0 and s < warmup_steps:
            return (s + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (s - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


# --------------------------------------------------------------------------- logging


class MetricsLogger:
    """Appends one JSON object per logged step to OUTPUT/metrics.jsonl (and TensorBoard)."""

    def __init__(self, output_dir: Path, tensorboard: str = "auto", resume_step: int | None = None):
        self.path = output_dir / "metrics.jsonl"
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():  # drop lines logged after the checkpoint we resume from
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard != "no":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                if tensorboard == "yes":
                    raise
        self._file = self.path.open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of OUTPUT/metrics.jsonl."""
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress_bar(total: int, initial: int, desc: str):
    """A tqdm bar on stderr (disabled when stderr is not a terminal, e.g. in tests and logs)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=None, file=sys.stderr)


# --------------------------------------------------------------------------- checkpoints


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors the optimizer changes: every weight, or only the adapters (and heads) with LoRA."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    output_dir: Path, step: int, model, optimizer, scheduler, limit: int, extra: dict | None = None
) -> Path:
    """OUTPUT/checkpoints/step-N: trainable weights, optimizer, scheduler, RNG states, step."""
    from safetensors.torch import save_file

    root = output_dir / CHECKPOINT_DIR
    path = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state_dict(model), str(tmp / WEIGHTS_FILE))
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "extra": extra or {},
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


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore a checkpoint into model/optimizer/scheduler and the RNGs; returns its state dict."""
    from safetensors.torch import load_file

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
    state = torch.load(path / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    """The mutable parts of one training run that every loop shares."""

    cfg: TrainConfig
    output_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: StepSchedule
    logger: MetricsLogger
    start_step: int
    bar: Any = None

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    def step_done(self, step: int, metrics: dict[str, float], tokens: int, started: float) -> None:
        """Finish optimizer step `step` (1-based after it): clip, update, log, checkpoint."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.max_grad_norm > 0:
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        done = step + 1
        metrics = {
            "loss": metrics.pop("loss"),
            "step_time_s": time.perf_counter() - started,
            "tokens": int(tokens),
            "learning_rate": lr,
            "epoch": self.schedule.epoch_of(done),
            **metrics,
        }
        if done % max(1, self.cfg.logging_steps) == 0 or done == self.total_steps:
            self.logger.log(done, metrics)
        if self.cfg.save_steps > 0 and done % self.cfg.save_steps == 0 and done < self.total_steps:
            save_checkpoint(
                self.output_dir,
                done,
                self.model,
                self.optimizer,
                self.scheduler,
                self.cfg.save_total_limit,
                {"epoch": self.schedule.epoch_of(done)},
            )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")

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


def start_run(cfg: TrainConfig, output_dir: Path, model: torch.nn.Module, num_records: int, desc: str) -> Run:
    """Optimizer, scheduler, schedule and logger for a run; restores a checkpoint on resume."""
    if num_records == 0:
        raise TrainError(f"{cfg.data}: no training records")
    schedule = StepSchedule(num_records, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.epochs, cfg.max_steps)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_scheduler, cfg.warmup_steps, schedule.total_steps)
    )
    start = 0
    checkpoint = None
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
        start = int(load_checkpoint(checkpoint, model, optimizer, scheduler)["step"])
        print(f"resume: continuing from {checkpoint} (step {start})", file=sys.stderr)
    logger = MetricsLogger(output_dir, cfg.report_to_tensorboard, resume_step=start if checkpoint else None)
    bar = progress_bar(schedule.total_steps, start, desc)
    return Run(cfg, output_dir, model, optimizer, scheduler, schedule, logger, start, bar)


def save_final(model, tokenizer, output_dir: Path) -> Path:
    """OUTPUT/final (merged when LoRA) and OUTPUT/adapter via prefloop.models.load.save_final."""
    from prefloop.models.load import save_final as _save_final

    model.eval()
    _save_final(model, tokenizer, output_dir)
    return output_dir / "final"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
