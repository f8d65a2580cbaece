"""Fields every training command shares (`TrainConfig`), their checks, and the CLI entry of a loop.

Each loop's config subclasses `TrainConfig` and adds its own fields; tyro turns the fields and
their docstrings into flags and `--help` (see `prefloop.config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


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
    packing: bool = True
    """Run each micro-batch as one padding-free row (prefloop.models.packing); --no-packing pads to the longest sequence."""
    share_prefix: bool = True
    """With packing: store a prefix shared by several sequences once (a prompt and its responses, the chat template's system turn); causal models only."""
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
    report_to: list[Literal["wandb", "mlflow"]] | None = None
    """Also log to Weights & Biases and/or MLflow (each must be installed; imported only when named)."""


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
    import importlib.util

    for name in cfg.report_to or ():
        if importlib.util.find_spec(name) is None:
            problems.append(f"report_to {name}: the package is not installed (pip install {name})")
    if problems:
        raise ConfigError("; ".join(problems))


def run_cli(cls: type[Any], argv: list[str], command: str, train: Callable[[Any], Path]) -> None:
    """The body of every command's `main`: parse the config, train, turn bad input into exit 2."""
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.io import DataError
    from prefloop.models.load import ModelLoadError

    cfg: Any = parse_args(cls, argv, prog=f"prefloop {command}", description=cls.__doc__)
    try:
        out = train(cfg)
    except (DataError, ConfigError, ModelLoadError, TrainError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f"done: {out}")
