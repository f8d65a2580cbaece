"""Reward-model losses: Bradley–Terry (with Llama 2 margin) and K-wise ranking losses.

Provenance
----------
- Bradley–Terry pairwise loss (Bradley & Terry 1952; Christiano et al. 2017; Ouyang et al. 2022,
  InstructGPT eq. 1):   L = −mean_b log σ(r_c − r_r)
- Margin (Touvron et al. 2023, Llama 2, eq. 2):   L = −mean_b log σ(r_c − r_r − m(r)),
  m ≥ 0 larger for clearer preferences.
- Soft labels (Bai et al. 2022, Constitutional AI §4.1: preference-model targets from the AI
  labeler's normalized probabilities): with q = P(chosen ≻ rejected) the target,
      L = −mean_b [q log σ(z) + (1 − q) log σ(−z)],   z = r_c − r_r (− m);   q = 1 is the above.
- K-wise pairwise loss (InstructGPT eq. 1, as in the seeds):
      L = −1/C(K,2) · Σ_{i better than j} log σ(r_i − r_j)     per prompt, then mean over prompts.
- Plackett–Luce listwise loss (Plackett 1975; Zhu, Jordan & Jiao 2023, "Principled RLHF with
  K-wise comparisons"; the seeds' MLE):   L = −Σ_k [r_k − log Σ_{i ≥ k} e^{r_i}]   per prompt.

Tensor shapes
-------------
chosen_rewards, rejected_rewards, margin, soft_label: [B] (margin may also be a float).
rewards, mask, ranks: [B, K], rows ordered best → worst unless ``ranks`` says otherwise.

Deviations
----------
- Variable K: ``mask`` marks the valid responses; each prompt's pairwise loss is the mean over
  its own valid pairs (1/C(K_b,2) with K_b its number of valid responses), prompts weigh equally.
- Ties (``ranks`` equal): the pairwise loss skips tied pairs, so a prompt's weight is
  1/(number of strictly ordered pairs). Plackett–Luce uses Breslow's tie handling (a tied group
  shares one denominator, see ``common.plackett_luce_nll``).
- Prompts with fewer than two valid responses (or only ties, for pairwise) add nothing and are
  left out of the mean; if no prompt qualifies the loss is 0 (still attached to the graph).
- Accuracy counts strictly greater rewards; an exact tie counts as wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefloop.losses.common import masked_mean, pairwise_logistic_nll, plackett_luce_nll

__all__ = ["RANKING_KINDS", "bradley_terry_loss", "ranking_loss"]

RANKING_KINDS = ("pairwise", "plackett_luce")


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: {described} (all must be equal)")


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    soft_label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean of −log σ(r_c − r_r − m), or with soft targets q of −[q log σ(z) + (1 − q) log σ(−z)].
    Returns (loss, metrics).

    Metrics: ``accuracy`` (share with r_c > r_r), ``margin`` (mean r_c − r_r),
    ``chosen_reward`` / ``rejected_reward`` (means), and ``target_margin`` (mean m) when given.
    """
    _check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    diff = chosen_rewards - rejected_rewards
    logits = diff
    if margin is not None:
        m = torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
        if m.dim() > 0 and m.shape != diff.shape:
            raise ValueError(f"margin shape {tuple(m.shape)} must equal rewards shape {tuple(diff.shape)}")
        logits = diff - m
    if soft_label is None:
        loss = -F.logsigmoid(logits).mean()
    else:
        q = torch.as_tensor(soft_label, dtype=diff.dtype, device=diff.device)
        if q.shape != diff.shape or bool(((q < 0) | (q > 1)).any()):
            raise ValueError(f"soft_label must be probabilities in [0, 1] of shape {tuple(diff.shape)}")
        loss = -(q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits)).mean()
    with torch.no_grad():
        metrics = {
            "accuracy": (diff > 0).float().mean().item(),
            "margin": diff.mean().item(),
            "chosen_reward": chosen_rewards.mean().item(),
            "rejected_reward": rejected_rewards.mean().item(),
        }
        if margin is not None:
            metrics["target_margin"] = m.float().mean().item()
    return loss, metrics


def ranking_rows(
    mask: torch.Tensor, kind: str = "pairwise", ranks: torch.Tensor | None = None
) -> torch.Tensor:
    """[B] bool: the rows `ranking_loss` averages over.

    "pairwise": rows with at least one strictly ordered pair of valid responses (an all-tied
    row has no pair and no loss); "plackett_luce": rows with at least two valid responses (an
    all-tied row is one Breslow tie group, whose likelihood still pulls its rewards together).
    A training loop that accumulates micro-batches weights each one by this count.
    """
    if kind not in RANKING_KINDS:
        raise ValueError(f"ranking_loss kind must be one of {RANKING_KINDS}, got {kind!r}")
    valid = mask.bool()
    if kind == "plackett_luce":
        return valid.sum(dim=1) >= 2
    r = ranks if ranks is not None else torch.arange(mask.shape[1], device=mask.device).expand_as(valid)
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1) & (r.unsqueeze(2) < r.unsqueeze(1))
    return pairs.flatten(1).any(dim=1)


def ranking_loss(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "pairwise",
    ranks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """K-wise reward-model loss over rows of responses ordered best → worst.

    rewards [B, K]; mask [B, K] (1 = a real response); ranks [B, K] optional ints (0 = best,
    equal = tie) overriding the column order. ``kind``: "pairwise" (all C(K,2) pairs, weight
    1/C(K,2) per prompt) or "plackett_luce" (listwise likelihood, summed over positions).
    Metrics: ``accuracy`` (share of strictly ordered valid pairs with the better one scored
    higher, pooled over the batch), ``margin`` (mean r_i − r_j over those pairs), ``num_pairs``.
    """
    if kind not in RANKING_KINDS:
        raise ValueError(f"ranking_loss kind must be one of {RANKING_KINDS}, got {kind!r}")
    pair_row, pairs, diffs = pairwise_logistic_nll(rewards, mask, ranks)
    row_loss = pair_row if kind == "pairwise" else plackett_luce_nll(rewards, mask, ranks)
    loss = masked_mean(row_loss, ranking_rows(mask, kind, ranks))
    with torch.no_grad():
        n = int(pairs.sum().item())
        metrics = {
            "accuracy": masked_mean((diffs > 0).float(), pairs).item(),
            "margin": masked_mean(diffs, pairs).item(),
            "num_pairs": float(n),
        }
    return loss, metrics
