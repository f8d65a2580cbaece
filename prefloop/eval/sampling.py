"""What every `prefloop eval` command needs before it judges: prompts, models and their samples.

- `eval_prompts(data, num_prompts, seed)`: prompts from a file (any format with a prompt), or
  `task:NAME` — the built-in task's held-out prompts, the same ones `prefloop demo` holds out
  for the same seed and count.
- `policy_path(spec)`: a run directory (OUTPUT/ with final/) stands for its final model.
- `run_models(run)`: every model a run saved (each checkpoint, then final/), for curves over
  training; `load_checkpoint_model` rebuilds a checkpoint's policy from its trainable weights.
- `Sampler`: loads a model once and samples seeded completions with the HF backend; every
  model is asked the same prompts with the same seed, so differences come from the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefloop.generation.base import Completion


def eval_prompts(data: str, num_prompts: int = 30, seed: int = 0) -> list[Any]:
    """Prompts to evaluate on: `task:NAME` (held-out prompts of a built-in task) or a data file."""
    if data.startswith("task:"):
        from prefloop.tasks import split_prompts, task_prompts

        prompts = task_prompts(data.split(":", 1)[1])
        n_eval = min(num_prompts, len(prompts) - 1) if num_prompts > 0 else len(prompts) // 3
        _, held_out = split_prompts(prompts, len(prompts) - n_eval, n_eval, seed)
        return held_out
    from prefloop.generation.cli import read_prompts

    prompts = read_prompts(data)
    return prompts[:num_prompts] if num_prompts > 0 else prompts


def policy_path(spec: str) -> str:
    """A model spec as `load_causal_lm` takes it; a training run's OUTPUT dir means OUTPUT/final."""
    path = Path(spec)
    if path.is_dir() and (path / "final").is_dir() and not (path / "config.json").exists():
        return str(path / "final")
    return spec


def run_models(run: str | Path) -> list[tuple[str, str | Path, int | None]]:
    """(label, run or model dir, checkpoint step or None) of each model a run saved, in step order:
    every checkpoints/step-N, then final/. A plain model directory is itself (a run's final/
    given alone is labelled by its run)."""
    run = Path(run)
    if not (run / "config.yaml").exists() or not (run / "final").is_dir():
        label = run.parent.name if _is_run_final(run) else run.name
        return [(label or str(run), run, None)]
    from prefloop.train.checkpoint import list_checkpoints

    found: list[tuple[str, str | Path, int | None]] = []
    for ckpt in list_checkpoints(run):
        step = int(ckpt.name.split("-", 1)[1])
        found.append((f"{run.name}@{step}", run, step))
    found.append((run.name, run / "final", None))
    return found


def _is_run_final(path: Path) -> bool:
    return path.name == "final" and (path.parent / "config.yaml").exists()


def run_config_path(path: str | Path) -> Path:
    """The config.yaml that describes `path`: its own, or its run's when `path` is RUN/final."""
    path = Path(path)
    return path.parent / "config.yaml" if _is_run_final(path) else path / "config.yaml"


def load_checkpoint_model(run: Path, step: int) -> torch.nn.Module:
    """The policy of a run at checkpoint `step`: its start model (+ LoRA as configured) with the
    checkpoint's trainable weights, adapters merged."""
    import yaml
    from safetensors.torch import load_file

    from prefloop.models.load import apply_lora, load_causal_lm
    from prefloop.train.checkpoint import CHECKPOINT_DIR, WEIGHTS_FILE

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    model = load_causal_lm(cfg["model"])
    if cfg.get("lora"):
        model = apply_lora(
            model,
            r=cfg["lora_r"],
            alpha=cfg["lora_alpha"],
            dropout=0.0,
            target_modules=cfg.get("lora_target_modules"),
            task_type="CAUSAL_LM",
        )
    weights = load_file(str(run / CHECKPOINT_DIR / f"step-{step}" / WEIGHTS_FILE))
    if any(k.startswith("policy.") for k in weights):
        # an online run checkpoints its ActorCritic: the policy's weights under `policy.`, the
        # value model's (not needed to sample) under `value.`
        weights = {k.removeprefix("policy."): v for k, v in weights.items() if k.startswith("policy.")}
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(
            f"{run}: checkpoint step-{step} does not fit its config's model: {sorted(missing)[:3]}"
        )
    model.load_state_dict(weights, strict=False)
    return model.merge_and_unload() if cfg.get("lora") else model


@dataclass
class Sampler:
    """Seeded sampling settings shared by every model an eval command compares."""

    max_new_tokens: int = 48
    temperature: float = 1.0
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"

    def load(self, spec: str | Path, step: int | None = None) -> tuple[Any, torch.nn.Module]:
        """(tokenizer, model) of a model spec / run dir, or of a run's checkpoint `step`."""
        from prefloop.models.load import load_causal_lm, load_tokenizer, resolve_device

        if step is not None:
            tokenizer = load_tokenizer(Path(spec) / "final")
            model = load_checkpoint_model(Path(spec), step)
        else:
            path = policy_path(str(spec))
            tokenizer = load_tokenizer(path)
            model = load_causal_lm(path)
        return tokenizer, model.to(resolve_device(self.device)).eval()

    def sample(
        self, tokenizer: Any, model: torch.nn.Module, prompts: Sequence[Any], num_samples: int = 1
    ) -> list[Completion]:
        from prefloop.generation.hf import HFGenerator

        generator = HFGenerator(
            model,
            tokenizer,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        return generator.generate(list(prompts), num_responses=num_samples, seed=self.seed)
