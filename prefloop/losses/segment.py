"""Preferences between trajectory segments: Bradley–Terry over summed rewards, with random answers.

Provenance and formula
----------------------
Christiano et al. 2017, "Deep Reinforcement Learning from Human Preferences", §2.2.3 (eq. 1) and
§2.2.3's "we assume a 10 % chance that the human responds uniformly at random". A reward
predictor r̂(o, a) scores each step of two segments σ¹, σ²; the preference probability is a
Bradley–Terry model over the segments' summed predicted rewards, mixed with a random answer:

    R_k = Σ_t r̂(o_t^k, a_t^k)                       (summed over the segment's steps)
    P(σ¹ ≻ σ²) = (1 − ε) · σ(R_1 − R_2) + ε / 2      (ε = 0.1: P = 0.9 σ(ΔR) + 0.05)
    L = −mean_b [ y_b log P_b + (1 − y_b) log(1 − P_b) ]

y is the label: 1 when σ¹ is preferred, 0 when σ², ½ for "equally good" (the paper's uniform
label on ties). With ε = 0 this is the plain Bradley–Terry / logistic loss.

Tensor shapes
-------------
rewards_a, rewards_b: [B, L] predicted per-step rewards of the two segments of each pair (L steps;
segments are padded to a common length by the caller, so every step counts); labels: [B] in [0, 1].

Deviations
----------
- The mixture is computed as log((1 − ε)σ(ΔR) + ε/2) directly; with ε > 0 it is bounded below by
  log(ε/2), so no clamping is needed. With ε = 0 the log-sigmoid form is used (stable for large |ΔR|).
- Metrics report the model's accuracy on the strict labels only (ties are left out of it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["segment_preference_loss"]


def segment_preference_loss(
    rewards_a: torch.Tensor,
    rewards_b: torch.Tensor,
    labels: torch.Tensor,
    random_answer: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Christiano et al.'s segment comparison loss. Returns (loss, metrics).

    rewards_a, rewards_b: [B, L] per-step predicted rewards; labels: [B], 1 = a preferred,
    0 = b preferred, ½ = tie; ``random_answer`` ε in [0, 1): the assumed rate of uniformly random
    answers. Gradient flows through both reward tensors.
    Metrics: segment/accuracy (share of strict labels the summed rewards order correctly; NaN when
    none), segment/p_preferred (mean P given to the labelled side), segment/return_gap
    (mean |R_a − R_b|).
    """
    if rewards_a.dim() != 2 or rewards_a.shape != rewards_b.shape:
        raise ValueError(
            f"rewards_a {tuple(rewards_a.shape)} and rewards_b {tuple(rewards_b.shape)} must be the same [B, L]"
        )
    if labels.shape != rewards_a.shape[:1]:
        raise ValueError(f"labels shape {tuple(labels.shape)} must be [B] = [{rewards_a.shape[0]}]")
    if not 0.0 <= random_answer < 1.0:
        raise ValueError(f"random_answer must be in [0, 1), got {random_answer}")
    y = labels.detach().to(rewards_a.dtype)
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError("labels must be in [0, 1] (1 = a preferred, 0 = b, 0.5 = tie)")
    diff = rewards_a.sum(dim=1) - rewards_b.sum(dim=1)
    if random_answer == 0.0:
        log_p, log_q = F.logsigmoid(diff), F.logsigmoid(-diff)
    else:
        p = (1.0 - random_answer) * torch.sigmoid(diff) + random_answer / 2.0
        log_p, log_q = torch.log(p), torch.log1p(-p)
    loss = -(y * log_p + (1.0 - y) * log_q).mean()
    with torch.no_grad():
        strict = y != 0.5
        correct = (diff > 0) == (y > 0.5)
        p_a = log_p.exp()
        metrics = {
            "segment/accuracy": correct[strict].float().mean().item() if bool(strict.any()) else float("nan"),
            "segment/p_preferred": (y * p_a + (1.0 - y) * (1.0 - p_a)).mean().item(),
            "segment/return_gap": diff.abs().mean().item(),
        }
    return loss, metrics
