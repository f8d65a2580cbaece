"""Which records each optimizer step sees, how micro-batches are weighted, and the learning-rate schedule.

- `split_eval`: the seeded train / held-out split; `split_by_prompt` splits records by their
  prompt, so no held-out prompt is trained on (what the loops use).
- `StepSchedule`: the data order is a pure function of (seed, epoch, step), so a resumed run
  sees exactly the batches an uninterrupted run would have seen without storing iterator state.
- `accumulation_scale` / `weighted_metrics`: an accumulated step has the loss, gradient and
  metrics of the full batch.
- `lr_lambda`: warmup then linear / cosine / constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


def split_eval(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of range(n) into (train, eval) indices; eval gets round(n * fraction), at least 1 if > 0."""
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    n_eval = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def prompt_key(prompt: Any) -> str:
    """A hashable identity of a prompt (a string, or chat messages as canonical JSON)."""
    import json

    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def split_by_prompt(prompts: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, eval) split of record indices in which no prompt is on both sides.

    The distinct prompts (in order of first appearance) are split with `split_eval`, so
    `fraction` is the share of prompts held out, and every record follows its prompt: the
    pairs of one ranking, the two halves of a pair read as binary feedback, or several
    records of one prompt never straddle the split.
    """
    keys = [prompt_key(p) for p in prompts]
    distinct = list(dict.fromkeys(keys))
    _, eval_groups = split_eval(len(distinct), fraction, seed)
    held_out = {distinct[g] for g in eval_groups}
    train = [i for i, k in enumerate(keys) if k not in held_out]
    return train, [i for i, k in enumerate(keys) if k in held_out]


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
