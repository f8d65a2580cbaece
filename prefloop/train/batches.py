"""Small tensor helpers for micro-batches: moving a padded batch to a device, scattering ranked items."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


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
