"""Which records each optimizer step sees, how micro-batches are weighted, and the learning-rate schedule.

- `split_eval`: the seeded train / held-out split; `split_by_prompt` splits records by their
  prompt, so no held-out prompt is trained on (what the loops use).
- `StepSchedule`: the data order is a pure function of (seed, epoch, step), so a resumed run
  sees exactly the batches an uninterrupted run would have seen without storing iterator state;
  with several processes each rank takes its shard of every step's records (`rank_share`).
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

    With `world_size` W processes the effective batch is batch_size * grad_accum * W: each step
    takes the same next slice of the epoch's order as one process with a W times larger batch,
    and rank r trains on the r-th of W near-equal contiguous parts of it (`rank_share`), cut
    into micro-batches of batch_size. So 1 process x batch 8, 1 x batch 4 x accum 2 and
    2 x batch 4 see the same records per step, and a run may resume on another world size.
    """

    num_records: int
    batch_size: int
    grad_accum: int
    seed: int
    epochs: int = 1
    max_steps: int = -1
    rank: int = 0
    world_size: int = 1
    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False, init=False)

    @property
    def step_records(self) -> int:
        """Records per optimizer step over all ranks (the last step of an epoch may have fewer)."""
        return self.batch_size * self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_records / self.step_records)

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps > 0 else self.epochs * self.steps_per_epoch

    def epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._orders = {epoch: torch.randperm(self.num_records, generator=gen).tolist()}
        return self._orders[epoch]

    def step_indices(self, step: int) -> list[int]:
        """Record indices of optimizer step `step` (0-based), over all ranks."""
        epoch, k = divmod(step, self.steps_per_epoch)
        eff = self.step_records
        return self.epoch_order(epoch)[k * eff : (k + 1) * eff]

    def rank_share(self, step: int, rank: int) -> list[int]:
        """Rank `rank`'s part of the step's records: the rank-th of world_size near-equal contiguous slices."""
        chunk = self.step_indices(step)
        n, w = len(chunk), self.world_size
        return chunk[rank * n // w : (rank + 1) * n // w]

    def micro_batches(self, step: int) -> list[list[int]]:
        """Record indices of each micro-batch of this rank in optimizer step `step` (0-based)."""
        share = self.rank_share(step, self.rank)
        return [share[i : i + self.batch_size] for i in range(0, len(share), self.batch_size)]

    def passes(self, step: int) -> int:
        """Forward/backward passes every rank runs in `step`: the most micro-batches any rank has (>= 1).

        Engines need every rank to run the same passes (a gradient all-reduce or a shard
        all-gather waits for all ranks), so a rank with fewer records pads with stand-ins whose
        loss counts zero (`padded_micro_batches`). With one process this is its own count.
        """
        sizes = (len(self.rank_share(step, r)) for r in range(self.world_size))
        return max(1, *(math.ceil(n / self.batch_size) for n in sizes))

    def padded_micro_batches(self, step: int) -> tuple[list[list[int]], int]:
        """(this rank's micro-batches padded to `passes(step)`, how many are real).

        A stand-in micro-batch holds the step's first record; its loss and metrics weigh 0.
        """
        real = self.micro_batches(step)
        stand_in = [self.step_indices(step)[0]]
        return real + [stand_in] * (self.passes(step) - len(real)), len(real)

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
