"""Direct alignment losses: DPO (with cDPO label smoothing), Plackett–Luce DPO, IPO, KTO.

Provenance and formulas (logps are sequence log-probabilities log π(y|x), see common.sequence_logps)
------------------------------------------------------------------------------------------------
- DPO: Rafailov et al. 2023, "Direct Preference Optimization", eq. 7.
      h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))
      L = −mean log σ(β h)
  Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): with label noise ε,
      L = −mean [(1 − ε) log σ(β h) + ε log σ(−β h)]
  Implicit rewards reported as metrics: r(y) = β (log π(y) − log π_ref(y)).
- Plackett–Luce DPO: Rafailov et al. 2023, Appendix A.3 (the seeds' general N-response form).
  With s_k = β (log π(y_k) − log π_ref(y_k)) for responses ordered best → worst,
      L = −mean_b Σ_k [s_k − log Σ_{i ≥ k} e^{s_i}]
  For K = 2 this is exactly DPO: s_1 − log(e^{s_1} + e^{s_2}) = log σ(s_1 − s_2), second term 0.
- IPO: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
  Preferences", eq. 17:   L = mean (h − 1/(2β))²
- KTO: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", eq. 8.
      r = log π(y) − log π_ref(y);   z0 = max(KL estimate, 0), no gradient
      v = λ_D σ(β (r − z0))  if y desirable,   λ_U σ(β (z0 − r))  if undesirable
      L = mean (λ_y − v)

Tensor shapes
-------------
Pairwise: policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: [B].
Listwise: policy_logps, ref_logps, mask, ranks: [B, K]. KTO: policy_logps, ref_logps,
desirable: [B]; kl_baseline: float, scalar tensor, or [B].

Deviations
----------
- Reference log-probs are plain inputs (precomputed or live); nothing here runs a model.
- KTO's z0 is computed by the loop (e.g. from mismatched prompt/completion pairs of the batch,
  as in the paper); here it is only clamped at 0 and detached, as in the paper's implementation.
- Plackett–Luce DPO accepts optional ``ranks`` for ties, handled by Breslow's method (see
  common.plackett_luce_nll); rows with fewer than two valid responses are left out of the mean.
- No KL metric: the loss sees only sequence log-probs of off-policy data; the loop estimates KL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefloop.losses.common import masked_mean, pairwise_logistic_nll, plackett_luce_nll

__all__ = ["dpo_loss", "ipo_loss", "kto_loss", "plackett_luce_dpo_loss"]


def _check_pairwise(beta: float, **tensors: torch.Tensor) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: {described} (all must be equal)")


def _pairwise_metrics(
    beta: float,
    chosen_logratio: torch.Tensor,
    rejected_logratio: torch.Tensor,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
) -> dict[str, float]:
    """Implicit-reward metrics shared by DPO and IPO (detached python floats)."""
    with torch.no_grad():
        chosen = beta * chosen_logratio
        rejected = beta * rejected_logratio
        return {
            "rewards/chosen": chosen.mean().item(),
            "rewards/rejected": rejected.mean().item(),
            "rewards/accuracy": (chosen > rejected).float().mean().item(),
            "rewards/margin": (chosen - rejected).mean().item(),
            "logps/chosen": policy_chosen_logps.mean().item(),
            "logps/rejected": policy_rejected_logps.mean().item(),
        }


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sigmoid DPO loss; ``label_smoothing`` ε in [0, 0.5] gives conservative DPO. Returns (loss, metrics).

    Metrics: rewards/chosen, rewards/rejected (mean β·log-ratio), rewards/accuracy,
    rewards/margin, logps/chosen, logps/rejected.
    """
    _check_pairwise(
        beta,
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_logratio - rejected_logratio)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits)
    if label_smoothing > 0:
        losses = losses - label_smoothing * F.logsigmoid(-logits)
    metrics = _pairwise_metrics(
        beta, chosen_logratio, rejected_logratio, policy_chosen_logps, policy_rejected_logps
    )
    return losses.mean(), metrics


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """IPO loss mean (h − 1/(2β))², h the difference of log-ratios. Same metrics as ``dpo_loss``."""
    _check_pairwise(
        beta,
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratio - rejected_logratio
    loss = ((h - 1.0 / (2.0 * beta)) ** 2).mean()
    metrics = _pairwise_metrics(
        beta, chosen_logratio, rejected_logratio, policy_chosen_logps, policy_rejected_logps
    )
    return loss, metrics


def plackett_luce_dpo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.1,
    ranks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO for rankings of K responses (Plackett–Luce over β·log-ratios). Returns (loss, metrics).

    policy_logps, ref_logps, mask: [B, K], rows ordered best → worst (or by ``ranks``, 0 = best).
    Metrics: rewards/chosen (mean implied reward of the best-ranked valid response),
    rewards/rejected (mean over the other valid responses), rewards/margin (their difference),
    rewards/accuracy (share of strictly ordered pairs whose implied rewards agree). For K = 2 they
    equal ``dpo_loss``'s metrics.
    """
    _check_pairwise(beta, policy_logps=policy_logps, ref_logps=ref_logps, mask=mask)
    scores = beta * (policy_logps - ref_logps)
    row_loss = plackett_luce_nll(scores, mask, ranks)
    valid = mask.bool()
    loss = masked_mean(row_loss, valid.sum(dim=1) >= 2)
    with torch.no_grad():
        _, pairs, diffs = pairwise_logistic_nll(scores, mask, ranks)
        r = (
            ranks
            if ranks is not None
            else torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
        )
        big = torch.iinfo(torch.long).max
        best_rank = (
            torch.where(valid, r.long(), torch.full_like(r.long(), big)).min(dim=1, keepdim=True).values
        )
        is_best = valid & (r.long() == best_rank)
        rest = valid & ~is_best
        rows = valid.sum(dim=1) >= 2
        chosen = masked_mean(masked_mean(scores, is_best, dim=1), rows)
        rejected = masked_mean(masked_mean(scores, rest, dim=1), rows)
        metrics = {
            "rewards/chosen": chosen.item(),
            "rewards/rejected": rejected.item(),
            "rewards/margin": (chosen - rejected).item(),
            "rewards/accuracy": masked_mean((diffs > 0).float(), pairs).item(),
        }
    return loss, metrics


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_baseline: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KTO loss mean(λ_y − v(x, y)). Returns (loss, metrics).

    desirable: bool [B]. kl_baseline: the loop's KL(π ‖ π_ref) estimate z0 (float, scalar or [B]),
    clamped at 0 and detached here. Metrics: ``kl_baseline`` (the z0 used, after clamping), ``rewards/desirable`` and
    ``rewards/undesirable`` (mean β·log-ratio of each group; a key is absent when its group is
    empty in the batch), ``count/desirable``, ``count/undesirable``.
    """
    _check_pairwise(beta, policy_logps=policy_logps, ref_logps=ref_logps, desirable=desirable)
    if desirable.dtype != torch.bool:
        raise ValueError(f"desirable must be a bool tensor, got dtype {desirable.dtype}")
    z0 = torch.as_tensor(kl_baseline, dtype=policy_logps.dtype, device=policy_logps.device)
    if z0.dim() > 0 and z0.shape != policy_logps.shape:
        raise ValueError(
            f"kl_baseline shape {tuple(z0.shape)} must be a scalar or equal policy_logps shape "
            f"{tuple(policy_logps.shape)}"
        )
    z0 = z0.detach().clamp(min=0)
    logratio = policy_logps - ref_logps
    v_desirable = desirable_weight * torch.sigmoid(beta * (logratio - z0))
    v_undesirable = undesirable_weight * torch.sigmoid(beta * (z0 - logratio))
    value = torch.where(desirable, v_desirable, v_undesirable)
    weight = torch.where(
        desirable,
        torch.tensor(desirable_weight, dtype=value.dtype, device=value.device),
        torch.tensor(undesirable_weight, dtype=value.dtype, device=value.device),
    )
    loss = (weight - value).mean()
    with torch.no_grad():
        rewards = beta * logratio
        n_des = int(desirable.sum().item())
        n_und = desirable.numel() - n_des
        metrics = {
            "kl_baseline": z0.float().mean().item(),
            "count/desirable": float(n_des),
            "count/undesirable": float(n_und),
        }
        if n_des:
            metrics["rewards/desirable"] = rewards[desirable].mean().item()
        if n_und:
            metrics["rewards/undesirable"] = rewards[~desirable].mean().item()
    return loss, metrics
