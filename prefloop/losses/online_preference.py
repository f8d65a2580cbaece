"""Nash-MD's policy loss: a score-function estimate of the regularized preference game.

Provenance
----------
Munos et al. 2023, "Nash Learning from Human Feedback" (the seeds' last section). The policy
plays against an alternative drawn from the geometric mixture of itself and the reference,
    π^α_mix(y | x) ∝ π_θ(y | x)^(1−α) · π_ref(y | x)^α,
and improves its expected preference over it while staying close to π_ref:
    max_θ  E_{y ~ π_θ, y' ~ π^α_mix} [P(y ≻ y' | x)] − τ · KL(π_θ ‖ π_ref).
With the REINFORCE (score-function) estimator, a baseline of ½ (the value of a fair game) and
the KL's own score-function form, the loss whose gradient is that of the negated objective is

    L = mean_b [ −(P_b − ½) · log π_θ(y_b | x_b)  +  τ · sg(log π_θ(y_b|x_b) − log π_ref(y_b|x_b)) · log π_θ(y_b|x_b) ]

(sg = stop-gradient): ∇L = −E[(P − ½)∇log π] + τ E[log(π/π_ref) ∇log π] = −∇(objective).

Tensor shapes
-------------
policy_logps [B] (with grad), ref_logps [B], preference [B] in [0, 1]: P(y_b ≻ y'_b) from the teacher.

Deviations
----------
- The paper's Nash-MD is a mirror-descent step on the tabular policy; for a neural policy we take
  gradient steps on the loss above (one step per batch), as the deep-learning variant in the
  paper's experiments does.
- The mixture is applied per token (mixed next-token log-probs), which samples from the
  geometric mixture of the autoregressive factors — an approximation of the sequence-level
  mixture (exact when the per-token normalizers agree).
"""

from __future__ import annotations

import torch

__all__ = ["nash_md_loss"]


def nash_md_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    preference: torch.Tensor,
    tau: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Nash-MD loss (module docstring). Returns (loss, metrics)."""
    if not (policy_logps.shape == ref_logps.shape == preference.shape) or policy_logps.dim() != 1:
        raise ValueError(
            f"policy_logps {tuple(policy_logps.shape)}, ref_logps {tuple(ref_logps.shape)} and "
            f"preference {tuple(preference.shape)} must all be [B]"
        )
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    pref = preference.to(policy_logps.dtype)
    log_ratio = (policy_logps - ref_logps).detach()
    game = -(pref - 0.5) * policy_logps
    kl = tau * log_ratio * policy_logps
    loss = (game + kl).mean()
    metrics = {
        "preference": pref.mean().item(),
        "kl": log_ratio.mean().item(),
        "policy_logps": policy_logps.detach().mean().item(),
    }
    return loss, metrics
