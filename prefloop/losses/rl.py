"""Online RL pieces: advantages, PPO's clipped losses, KL control and shaping, entropy, PPO-ptx.

Provenance and formulas (all tensors over *response* tokens; see "Tensor shapes")
--------------------------------------------------------------------------------
- KL-in-reward shaping (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
  Preferences"; Ouyang et al. 2022, InstructGPT; the seeds' objective r − β log(π/π_SFT)):
      r_t = −β · kl_t  for every real token,   plus the sequence score s at the last real token,
      kl_t = k1 (log π − log π_ref) or k3 ((ρ − 1) − log ρ, ρ = π_ref/π)   (Schulman 2020).
- GAE (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation"), with V = 0 after a row's last real token (the episode ends there):
      δ_t = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γλ A_{t+1},   returns R_t = A_t + V_t.
- Discounted returns-to-go (REINFORCE, Williams 1992):   G_t = Σ_{s ≥ t} γ^{s−t} r_s.
- PPO clipped surrogate (Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7),
  as a loss to minimise, per token:
      ρ_t = exp(log π_θ(y_t) − log π_old(y_t)),
      ℓ_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε)).
  Dual clip (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL", eq. 5), for
  A_t < 0 only:   ℓ_t = min(ℓ_t, −c A_t),  c > 1 (bounds the loss when ρ ≫ 1 on a bad token).
- Clipped value loss (the PPO2 baselines implementation; InstructGPT's value model):
      ℓ_t = ½ max((V_t − R_t)², (V_old,t + clip(V_t − V_old,t, −ε_v, ε_v) − R_t)²).
- Group baselines over G samples of one prompt (rewards [P, G]):
      grpo     (r − mean_g r) / (std_g r + 1e-4), std the sample (Bessel) std
               (Shao et al. 2024, DeepSeekMath, §4.1.2)
      dr_grpo  r − mean_g r   (Liu et al. 2025, "Understanding R1-Zero-Like Training")
      rloo     r_i − (1/(G−1)) Σ_{j≠i} r_j   (Kool et al. 2019; Ahmadian et al. 2024)
- REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning LLMs"):
      A_t = G_t (returns-to-go of the KL-shaped token rewards, γ = 1), then normalised over every
      real token of the global batch:  A ← (A − mean) / sqrt(var + 1e-8), var with Bessel's correction.
- Adaptive KL controller (Ziegler et al. 2019, §2.2):
      e = clip(KL_current / KL_target − 1, −0.2, 0.2),   β ← β (1 + e · n_steps / horizon).
- Entropy of the policy at each position: H_t = logsumexp(z_t) − Σ_v softmax(z_t)_v z_t,v.
- KL as a loss term (GRPO, Shao et al. 2024, eq. 4, with the k3 estimator): mean of kl_t.
- PPO-ptx (Ouyang et al. 2022, eq. 2; the seeds' L_PPO-ptx): the objective adds
  γ E_{x∼D_pretrain}[log π(x)], so the loss adds  −γ · mean_x Σ_t log π(x_t | x_<t).

Tensor shapes
-------------
B sequences, T response positions (padded), V vocabulary, P prompts, G samples per prompt.
logps, old_logps, ref_logps, values, old_values, rewards, advantages, returns, mask: [B, T];
``mask`` is 1 on real tokens (a prefix of each row) and 0 on padding. scores: [B].
logits: [B, T, V]. Group rewards: [P, G].

Loss aggregations (``aggregation=``; every loss states its default)
------------------------------------------------------------------
    "token-mean"           Σ_{b,t} ℓ·m / Σ_{b,t} m       every real token of the batch weighs the
                                                          same (PPO here; DAPO's choice)
    "seq-mean-token-mean"  mean_b (Σ_t ℓ·m / Σ_t m)      every sequence weighs the same (GRPO's
                                                          paper form; long answers diluted)
    "seq-mean-token-sum"   mean_b Σ_t ℓ·m / C            token sums, C a constant (Dr. GRPO: the
                                                          generation budget; default C = 1)
``AGGREGATION_OF_METHOD`` maps grpo / dr_grpo / dapo to theirs.

Deviations
----------
- Inputs that are targets (old log-probs, advantages, returns, old values, rewards) are detached
  inside, so a caller cannot leak gradients through them by mistake.
- ``approx_kl`` in the policy metrics is the k3 estimate of KL(π_old ‖ π_θ) on the sampled tokens,
  mean((ρ − 1) − log ρ) (≥ 0, unbiased), the quantity PPO's early stop compares to a target.
- ``clip_fraction`` counts real tokens where the clipped branch is strictly larger (the gradient
  is cut), not merely |ρ − 1| > ε.
- PPO-ptx default aggregation is the seeds' exact form (sum over a text's tokens, mean over
  texts); ``aggregation="token-mean"`` gives the per-token LM loss many implementations use.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from prefloop.losses.common import kl_estimate, masked_mean, masked_sum, whiten

__all__ = [
    "AGGREGATIONS",
    "AGGREGATION_OF_METHOD",
    "GROUP_ADVANTAGE_KINDS",
    "SHAPING_KL_KINDS",
    "AdaptiveKLController",
    "FixedKLController",
    "aggregate_loss",
    "discounted_returns",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "kl_loss",
    "kl_penalized_rewards",
    "logprob_mismatch",
    "ppo_policy_loss",
    "ptx_loss",
    "reinforce_plus_plus_advantages",
    "truncated_importance_weights",
    "value_loss",
]

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
AGGREGATION_OF_METHOD = {"dapo": "token-mean", "grpo": "seq-mean-token-mean", "dr_grpo": "seq-mean-token-sum"}
GROUP_ADVANTAGE_KINDS = ("grpo", "dr_grpo", "rloo")
SHAPING_KL_KINDS = ("k1", "k3")
GRPO_STD_EPS = 1e-4


# --------------------------------------------------------------------------- helpers


def _check_bt(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or len(set(shapes.values())) != 1:
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: {described} (all must be the same [B, T])")


def aggregate_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: str = "token-mean",
    constant: float = 1.0,
) -> torch.Tensor:
    """Reduce a per-token loss [B, T] to a scalar over the real tokens (see the module's table).

    ``constant`` divides the token sums of "seq-mean-token-sum" only (Dr. GRPO's generation
    budget); a sequence without real tokens counts as 0 in the sequence means.
    """
    _check_bt(per_token=per_token, mask=mask)
    if aggregation == "token-mean":
        return masked_mean(per_token, mask)
    if aggregation == "seq-mean-token-mean":
        return masked_mean(per_token, mask, dim=-1).mean()
    if aggregation == "seq-mean-token-sum":
        if not constant > 0:
            raise ValueError(f"constant must be > 0, got {constant}")
        return masked_sum(per_token, mask, dim=-1).mean() / constant
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def _last_token_index(mask: torch.Tensor) -> torch.Tensor:
    lengths = mask.to(torch.long).sum(dim=-1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0, 0])
        raise ValueError(f"row {row} has no real token (mask all 0): nothing to put its score on")
    return lengths - 1


# --------------------------------------------------------------------------- rewards and returns


def kl_penalized_rewards(
    scores: torch.Tensor,
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards r_t = −β·kl_t, with the sequence score added at the last real token.

    scores [B] (the reward function's one number per response); logps, ref_logps, mask [B, T]
    (the sampling policy's and the frozen reference's log-probs of the sampled tokens).
    Returns (rewards [B, T], kl [B, T]); both are 0 on padding and carry no gradient.
    """
    _check_bt(logps=logps, ref_logps=ref_logps, mask=mask)
    if kind not in SHAPING_KL_KINDS:
        raise ValueError(f"KL shaping kind must be one of {SHAPING_KL_KINDS}, got {kind!r}")
    if scores.shape != logps.shape[:1]:
        raise ValueError(f"scores shape {tuple(scores.shape)} must be [B] = [{logps.shape[0]}]")
    with torch.no_grad():
        m = mask.to(logps.dtype)
        kl = kl_estimate(logps.detach(), ref_logps.detach(), kind) * m
        rewards = -kl_coef * kl
        last = _last_token_index(mask)
        rows = torch.arange(rewards.shape[0], device=rewards.device)
        rewards[rows, last] += scores.detach().to(rewards.dtype)
    return rewards, kl


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation. Returns (advantages [B, T], returns [B, T]).

    δ_t = r_t + γ V_{t+1} − V_t with V_{t+1} = 0 past a row's last real token; A_t = δ_t + γλ A_{t+1};
    returns = A + V. Zeros on padding; no gradient. (No aggregation: per-token outputs.)
    """
    _check_bt(rewards=rewards, values=values, mask=mask)
    with torch.no_grad():
        r, v = rewards.detach(), values.detach()
        m = mask.to(r.dtype)
        advantages = torch.zeros_like(r)
        next_value = torch.zeros_like(r[:, 0])
        next_adv = torch.zeros_like(r[:, 0])
        for t in reversed(range(r.shape[1])):
            delta = r[:, t] + gamma * next_value - v[:, t]
            adv = (delta + gamma * lam * next_adv) * m[:, t]
            advantages[:, t] = adv
            next_value = v[:, t] * m[:, t]
            next_adv = adv
        returns = (advantages + v) * m
    return advantages, returns


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Returns-to-go G_t = Σ_{s ≥ t} γ^{s−t} r_s over each row's real tokens; 0 on padding."""
    _check_bt(rewards=rewards, mask=mask)
    with torch.no_grad():
        r = rewards.detach() * mask.to(rewards.dtype)
        out = torch.zeros_like(r)
        running = torch.zeros_like(r[:, 0])
        for t in reversed(range(r.shape[1])):
            running = r[:, t] + gamma * running
            out[:, t] = running
        return out * mask.to(r.dtype)


def group_advantages(rewards: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample advantages from the G samples of each prompt: rewards [P, G] -> [P, G].

    "grpo": (r − mean) / (sample std + 1e-4); "dr_grpo": r − mean; "rloo": r_i − mean of the
    other G − 1. Needs G ≥ 2. No gradient. (The loop broadcasts them over each sample's tokens.)
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_prompts, G], got shape {tuple(rewards.shape)}")
    if kind not in GROUP_ADVANTAGE_KINDS:
        raise ValueError(f"group advantage kind must be one of {GROUP_ADVANTAGE_KINDS}, got {kind!r}")
    g = rewards.shape[1]
    if g < 2:
        raise ValueError(f"{kind} needs at least 2 samples per prompt, got G = {g}")
    with torch.no_grad():
        r = rewards.detach()
        mean = r.mean(dim=1, keepdim=True)
        if kind == "grpo":
            return (r - mean) / (r.std(dim=1, keepdim=True) + GRPO_STD_EPS)
        if kind == "dr_grpo":
            return r - mean
        others = (r.sum(dim=1, keepdim=True) - r) / (g - 1)
        return r - others


def reinforce_plus_plus_advantages(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, eps: float = 1e-8
) -> torch.Tensor:
    """REINFORCE++: returns-to-go of the (KL-shaped) token rewards, whitened over the whole batch.

    token_rewards, mask: [B, T] (e.g. from ``kl_penalized_rewards``). A = (G − mean) / sqrt(var + eps)
    with the mean and (Bessel) variance over every real token of the batch ("global batch
    normalisation"); 0 on padding. No gradient.
    """
    returns = discounted_returns(token_rewards, mask, gamma)
    return whiten(returns, mask, shift_mean=True, eps=eps)


# --------------------------------------------------------------------------- losses


def ppo_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    dual_clip: float | None = None,
    aggregation: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate as a loss. Returns (loss, metrics).

    Per token ℓ = max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(logps − old_logps); with ``dual_clip``
    c (> 1), ℓ = min(ℓ, −c·A) where A < 0. Default aggregation "token-mean": the mean over all
    real tokens of the batch. Gradient flows through ``logps`` only.
    Metrics: policy/clip_fraction, policy/dual_clip_fraction (when dual_clip), policy/approx_kl
    (k3 of KL(π_old ‖ π_θ)), policy/ratio_mean, policy/ratio_max, policy/ratio_min (real tokens).
    """
    _check_bt(logps=logps, old_logps=old_logps, advantages=advantages, mask=mask)
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    adv = advantages.detach()
    log_ratio = logps - old_logps.detach()
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    per_token = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        bounded = torch.minimum(per_token, -dual_clip * adv)
        per_token = torch.where(adv < 0, bounded, per_token)
    loss = aggregate_loss(per_token, mask, aggregation)
    with torch.no_grad():
        real = mask.bool()
        metrics = {
            "policy/clip_fraction": masked_mean((clipped > unclipped).to(ratio.dtype), mask).item(),
            "policy/approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask).item(),
            "policy/ratio_mean": masked_mean(ratio, mask).item(),
            "policy/ratio_max": ratio[real].max().item() if real.any() else 1.0,
            "policy/ratio_min": ratio[real].min().item() if real.any() else 1.0,
        }
        if dual_clip is not None:
            hit = (adv < 0) & (-dual_clip * adv < torch.maximum(unclipped, clipped))
            metrics["policy/dual_clip_fraction"] = masked_mean(hit.to(ratio.dtype), mask).item()
    return loss, metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None = 0.2,
    aggregation: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss ½·max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²). Returns (loss, metrics).

    ``clip_eps=None`` gives the plain ½(V − R)². Default aggregation "token-mean" (all real tokens).
    Gradient flows through ``values`` only. Metrics: value/clip_fraction (tokens where the clipped
    error is the larger one), value/mse (unclipped (V − R)², token mean), value/mean, value/returns_mean.
    """
    _check_bt(values=values, old_values=old_values, returns=returns, mask=mask)
    ret, old = returns.detach(), old_values.detach()
    err = (values - ret) ** 2
    if clip_eps is None:
        per_token = 0.5 * err
        clip_frac = 0.0
    else:
        if not clip_eps > 0:
            raise ValueError(f"clip_eps must be > 0 (or None), got {clip_eps}")
        clipped_values = old + (values - old).clamp(-clip_eps, clip_eps)
        err_clipped = (clipped_values - ret) ** 2
        per_token = 0.5 * torch.maximum(err, err_clipped)
        with torch.no_grad():
            clip_frac = masked_mean((err_clipped > err).to(err.dtype), mask).item()
    loss = aggregate_loss(per_token, mask, aggregation)
    with torch.no_grad():
        metrics = {
            "value/clip_fraction": clip_frac,
            "value/mse": masked_mean(err, mask).item(),
            "value/mean": masked_mean(values, mask).item(),
            "value/returns_mean": masked_mean(ret, mask).item(),
        }
    return loss, metrics


def entropy_from_logits(logits: torch.Tensor, chunk_rows: int = 8) -> torch.Tensor:
    """Entropy of softmax(logits) at every position: [B, T, V] -> [B, T] (differentiable).

    H = logsumexp(z) − Σ_v softmax(z)_v z_v, computed ``chunk_rows`` sequences at a time so only a
    chunk's [b, T, V] temporaries exist at once. Half precision is computed in float32.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    out = []
    for start in range(0, logits.shape[0], max(1, chunk_rows)):
        z = logits[start : start + chunk_rows]
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        probs = torch.softmax(z, dim=-1)
        out.append(torch.logsumexp(z, dim=-1) - (probs * z).sum(dim=-1))
    return torch.cat(out, dim=0)


def kl_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "k3",
    aggregation: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(π_θ ‖ π_ref) as a loss term (GRPO's way, instead of in the reward). Returns (loss, metrics).

    Per token kl_t = kl_estimate(logps, ref_logps, kind) (k1/k2/k3), gradient through ``logps``;
    default aggregation "token-mean". The caller multiplies by its β. Metrics: kl/loss_term.
    """
    _check_bt(logps=logps, ref_logps=ref_logps, mask=mask)
    per_token = kl_estimate(logps, ref_logps.detach(), kind)
    loss = aggregate_loss(per_token, mask, aggregation)
    return loss, {"kl/loss_term": loss.item()}


def ptx_loss(
    logps: torch.Tensor,
    mask: torch.Tensor,
    coef: float,
    aggregation: str = "seq-mean-token-sum",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-ptx's pretraining term as a loss: −γ · E_x[log π(x)]. Returns (loss, metrics).

    logps, mask: [B, T] token log-probs log π(x_t | x_<t) of pretraining/SFT texts under the
    policy (gradient flows through them). Default aggregation "seq-mean-token-sum": log π(x) is
    the sum over a text's tokens and E_x the mean over texts, exactly the seeds' formula;
    "token-mean" gives the per-token LM loss. Metrics: ptx/nll (the aggregated −log-likelihood
    before γ), ptx/coef.
    """
    _check_bt(logps=logps, mask=mask)
    if coef < 0:
        raise ValueError(f"ptx coef must be >= 0, got {coef}")
    nll = aggregate_loss(-logps, mask, aggregation)
    return coef * nll, {"ptx/nll": nll.item(), "ptx/coef": float(coef)}


def logprob_mismatch(
    sampler_logps: torch.Tensor, trainer_logps: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """How far the generator's log-probs are from the trainer's recomputation of the same tokens.

    Metrics over real tokens: logprobs/mismatch_mean (mean |Δ|), logprobs/mismatch_max (max |Δ|),
    logprobs/mismatch_bias (mean Δ = trainer − sampler). Nonzero means the importance ratio of the
    first PPO step is not 1 (different kernels, dtypes, padding, or sampling settings).
    """
    _check_bt(sampler_logps=sampler_logps, trainer_logps=trainer_logps, mask=mask)
    with torch.no_grad():
        delta = trainer_logps.detach().double() - sampler_logps.detach().double()
        real = mask.bool()
        return {
            "logprobs/mismatch_mean": masked_mean(delta.abs(), mask).item(),
            "logprobs/mismatch_max": delta.abs()[real].max().item() if real.any() else 0.0,
            "logprobs/mismatch_bias": masked_mean(delta, mask).item(),
            # KL(sampler ‖ trainer) per token on the sampler's own tokens, k3 form (≥ 0):
            # ρ = π_trainer / q_sampler = exp(Δ),  kl = (ρ − 1) − log ρ
            "logprobs/mismatch_kl": masked_mean(_k3(delta.masked_fill(~real, 0.0)), mask).item(),
        }


def _k3(delta: torch.Tensor) -> torch.Tensor:
    return delta.exp() - 1 - delta


def truncated_importance_weights(
    trainer_logps: torch.Tensor,
    sampler_logps: torch.Tensor,
    mask: torch.Tensor,
    cap: float = 2.0,
    seq_threshold: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights [B, T] correcting for a generator that is not the trainer (detached).

    Truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings
    You Off-Policy RL Training"; Ionides 2008 for truncation): the tokens were sampled from the
    generator's q (e.g. vLLM in bf16) but the loss is computed with the trainer's π_old, so each
    token's policy-gradient term is multiplied by
        w_t = min(π_old(y_t) / q(y_t), cap)         (capped ratio: bounded variance)
    Sequence-level mask (`seq_threshold` = C > 1, optional): a sequence whose per-token geometric
    mean ratio r̄ = exp(mean_t log(π_old/q)) lies outside [1/C, C] gets weight 0 on every token
    (a sequence the two engines disagree on as a whole is dropped, not reweighted).
    Padding gets 0. Metrics: is/ratio_mean (mean w before the cap), is/capped_frac (share of
    real tokens at the cap), is/masked_seq_frac (share of sequences masked).
    """
    _check_bt(trainer_logps=trainer_logps, sampler_logps=sampler_logps, mask=mask)
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if seq_threshold is not None and seq_threshold <= 1:
        raise ValueError(f"seq_threshold must be > 1, got {seq_threshold}")
    with torch.no_grad():
        m = mask.to(trainer_logps.dtype)
        delta = (trainer_logps.detach() - sampler_logps.detach()) * m
        ratio = delta.exp()
        weights = ratio.clamp(max=cap) * m
        keep = torch.ones(delta.shape[0], dtype=torch.bool, device=delta.device)
        if seq_threshold is not None:
            mean_log = delta.sum(dim=1) / m.sum(dim=1).clamp_min(1)
            keep = mean_log.abs() <= math.log(seq_threshold)
            weights = weights * keep.unsqueeze(1).to(weights.dtype)
        real = mask.bool()
        n_real = max(int(real.sum()), 1)
        metrics = {
            "is/ratio_mean": float(ratio[real].sum()) / n_real,
            "is/capped_frac": float((ratio[real] >= cap).sum()) / n_real,
            "is/masked_seq_frac": float((~keep).sum()) / max(delta.shape[0], 1),
        }
    return weights, metrics


# --------------------------------------------------------------------------- KL controllers


class FixedKLController:
    """A constant β (``value``); ``update`` does nothing. Same interface as the adaptive one."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al. 2019's proportional controller of β toward a target KL.

    ``update(current_kl, n_steps)``: e = clip(current_kl / target − 1, −0.2, 0.2);
    β ← β·(1 + e·n_steps/horizon). ``n_steps`` is how many samples (or steps, in the unit the
    horizon is counted in) the KL was measured over. Returns the new β (also ``value``).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if init_kl_coef <= 0 or target <= 0 or horizon <= 0:
            raise ValueError(
                f"init_kl_coef, target and horizon must be > 0, got {init_kl_coef}, {target}, {horizon}"
            )
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])
