"""Diffusion-DPO: DPO for denoising diffusion models, through their denoising errors.

Provenance and formula
----------------------
Wallace, Dang, Rafailov, Zhou, Lou, Purushwalkam, Ermon, Xiong, Joty & Naik 2023, "Diffusion
Model Alignment Using Direct Preference Optimization" (eq. 14). DPO needs log π(x₀); a diffusion
model has only its evidence lower bound, and the paper's bound on the DPO objective comes down
to one sampled timestep t ~ U{1..T} and one noise draw ε ~ N(0, I) shared by the preferred
image x₀ʷ and the rejected image x₀ˡ (x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε):

    e^θ_w   = ‖ε − ε_θ(x_tʷ, t)‖²      e^ref_w = ‖ε − ε_ref(x_tʷ, t)‖²     (same for l)
    Δ       = (e^θ_w − e^ref_w) − (e^θ_l − e^ref_l)
    L       = −mean log σ(−β · T · ω(λ_t) · Δ)

Lowering the policy's error on the preferred image (relative to the reference) and raising it
on the rejected one makes Δ negative and the loss fall; Δ = 0 (policy = reference) gives ln 2.
The implicit reward of an image at that (t, ε) is r(x) = −β·T·(e^θ(x) − e^ref(x)), so the loss
is −log σ(r(x_w) − r(x_l)) exactly as in DPO, and the metrics mirror `dpo_loss`'s.

Constants (what β absorbs)
--------------------------
- ω(λ_t) = 1: the paper uses a constant weighting in its experiments, so it is folded into β.
- T is explicit (`num_timesteps`): β·T as in eq. 14, so β keeps its meaning when T changes.
- The authors' released training script multiplies the logit by a further −½ and folds T into
  its β (β_dpo of a few thousand at T = 1000, with per-element mean errors); that ½ is folded
  into β here: our β·T = their β_dpo / 2 for the same errors.
- The errors are whatever the caller passes: prefloop's loop (`prefloop.train.diffusion_dpo`)
  passes the mean over pixels (as the released script does), so β does not scale with the image
  size; a sum over pixels would need β divided by the number of pixels.

Tensor shapes
-------------
policy_chosen_errors, policy_rejected_errors, ref_chosen_errors, ref_rejected_errors: [B]
(chosen = the preferred image x₀ʷ, rejected = x₀ˡ, each at the same t and ε as its partner).

Deviations
----------
- The reference errors are plain inputs (precomputed or live); nothing here runs a model.
- One (t, ε) per pair per call, as in the paper's training; the loop draws them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["diffusion_dpo_loss"]


def diffusion_dpo_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    ref_chosen_errors: torch.Tensor,
    ref_rejected_errors: torch.Tensor,
    beta: float,
    num_timesteps: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Diffusion-DPO loss −mean log σ(−β·T·Δ) over pairs. Returns (loss, metrics).

    Metrics (detached floats): rewards/chosen, rewards/rejected (mean implicit reward
    −β·T·(e^θ − e^ref)), rewards/margin (their difference = the logit), rewards/accuracy (share
    of pairs with chosen reward > rejected), errors/policy_chosen, errors/policy_rejected,
    errors/ref_chosen, errors/ref_rejected (mean denoising errors).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    tensors = {
        "policy_chosen_errors": policy_chosen_errors,
        "policy_rejected_errors": policy_rejected_errors,
        "ref_chosen_errors": ref_chosen_errors,
        "ref_rejected_errors": ref_rejected_errors,
    }
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or policy_chosen_errors.dim() != 1:
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: {described} (all must be [B])")
    scale = beta * num_timesteps
    chosen_rewards = -scale * (policy_chosen_errors - ref_chosen_errors)
    rejected_rewards = -scale * (policy_rejected_errors - ref_rejected_errors)
    logits = chosen_rewards - rejected_rewards  # = −β·T·Δ
    loss = -F.logsigmoid(logits).mean()
    with torch.no_grad():
        metrics = {
            "rewards/chosen": chosen_rewards.mean().item(),
            "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/margin": logits.mean().item(),
            "rewards/accuracy": (logits > 0).float().mean().item(),
            "errors/policy_chosen": policy_chosen_errors.mean().item(),
            "errors/policy_rejected": policy_rejected_errors.mean().item(),
            "errors/ref_chosen": ref_chosen_errors.mean().item(),
            "errors/ref_rejected": ref_rejected_errors.mean().item(),
        }
    return loss, metrics
