"""What a run writes for people: metrics.jsonl (+ TensorBoard), eval.json, a progress bar."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

EXTRA_LOGGERS = ("wandb", "mlflow")


class MetricsLogger:
    """Appends one JSON object per logged step to OUTPUT/metrics.jsonl (and TensorBoard, W&B, MLflow).

    W&B and MLflow are used only when asked (`report_to`) and imported only then; a missing
    package is a one-line error naming what to install. W&B reads WANDB_PROJECT / WANDB_MODE
    (e.g. offline) from the environment; MLflow reads MLFLOW_TRACKING_URI (default ./mlruns).

    Only one process of a multi-process run writes (`enabled=False` on the others: a no-op).
    """

    def __init__(
        self,
        output_dir: Path,
        tensorboard: str = "auto",
        resume_step: int | None = None,
        report_to: Sequence[str] = (),
        params: dict[str, Any] | None = None,
        enabled: bool = True,
    ):
        self.path = output_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():  # drop lines logged after the checkpoint we resume from
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        if tensorboard != "no":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                if tensorboard == "yes":
                    raise
        self.extra = [_open_extra(name, output_dir, params or {}) for name in report_to]
        self._file = self.path.open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)
        numeric = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for name, handle in self.extra:
            if name == "wandb":
                handle.log(numeric, step=step)
            else:
                handle.log_metrics({k.replace("@", "_at_"): v for k, v in numeric.items()}, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self.writer is not None:
            self.writer.close()
        for name, handle in self.extra:
            handle.finish() if name == "wandb" else handle.end_run()


def _open_extra(name: str, output_dir: Path, params: dict[str, Any]) -> tuple[str, Any]:
    """Start a W&B or MLflow run for this training run; (name, module handle)."""
    if name not in EXTRA_LOGGERS:
        raise ValueError(f"report_to: unknown logger {name!r}; choose from {', '.join(EXTRA_LOGGERS)}")
    try:
        module = __import__(name)
    except ImportError:
        raise ImportError(f"report_to {name}: the package is not installed (pip install {name})") from None
    flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
    if name == "wandb":
        module.init(
            project=os.environ.get("WANDB_PROJECT", "prefloop"),
            name=output_dir.name,
            dir=str(output_dir),
            config=flat,
        )
    else:
        module.start_run(run_name=output_dir.name)
        module.log_params(flat)
    return name, module


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


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (disabled when stderr is not a terminal, e.g. in tests and logs, and off `enabled`)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        dynamic_ncols=True,
        disable=None if enabled else True,
        file=sys.stderr,
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
