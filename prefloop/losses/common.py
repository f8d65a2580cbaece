"""Shared tensor math for the losses and the training loops.

Provenance
----------
- Masked reductions and whitening: standard; whitening as in the PPO implementations of
  Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences").
- Sequence log-probabilities: log π(y|x) = Σ_t log π(y_t | x, y_<t) over response tokens
  (Rafailov et al. 2023, DPO, eq. 7 uses the summed form; the length-averaged form is the loop's
  choice via ``average=True``).
- KL estimators k1, k2, k3: J. Schulman, "Approximating KL Divergence" (2020). With samples
  y ~ p (the policy) and r = q(y)/p(y) (q = reference):
      k1 = log p − log q = −log r            (unbiased, high variance, can be negative)
      k2 = ½ (log r)²                         (biased, low variance, ≥ 0)
      k3 = (r − 1) − log r                    (unbiased, low variance, ≥ 0)
- Plackett–Luce negative log-likelihood (Plackett 1975, Luce 1959), written as in the seeds:
      −ln Π_k exp(s_k) / Σ_{i ≥ k} exp(s_i)   for items ordered best → worst.

Tensor shapes
-------------
B batch, T sequence length, V vocabulary, K responses per prompt.

Deviations
----------
- Ties in Plackett–Luce use Breslow's approximation (from Cox's partial likelihood, which is the
  same model): an item's denominator sums over every item not strictly better than it, tied
  items included, so tied items share one "risk set" and no order among them is invented.
  Without ties this is exactly the Plackett–Luce likelihood.
- ``sequence_logps`` keeps the log-softmax only at the label of each position: it is computed
  block by block (≤ 8M logits per block) with a hand-written backward, so neither the forward
  nor the backward pass holds a second [B, T, V] tensor besides the logits and their gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "KL_ESTIMATORS",
    "default_ranks",
    "kl_estimate",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "pairwise_logistic_nll",
    "plackett_luce_nll",
    "sequence_logps",
    "token_logps",
    "whiten",
]


# --------------------------------------------------------------------------- masked reductions


def _as_weights(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mask (bool or 0/1 or float weights) as a tensor of ``like``'s dtype, broadcastable to it."""
    if mask.shape != like.shape:
        try:
            torch.broadcast_shapes(mask.shape, like.shape)
        except RuntimeError as e:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not broadcast to x shape {tuple(like.shape)}"
            ) from e
    return mask.to(dtype=like.dtype)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Σ x·mask over ``dim`` (all elements when ``dim`` is None)."""
    w = _as_weights(mask, x)
    # where() rather than x*w so NaN/inf in masked-out slots cannot leak into the sum.
    prod = torch.where(w != 0, x * w, torch.zeros((), dtype=x.dtype, device=x.device))
    return prod.sum() if dim is None else prod.sum(dim=dim)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None
) -> torch.Tensor:
    """Σ x·mask / Σ mask over ``dim``; 0 where the mask is empty (instead of NaN)."""
    w = _as_weights(mask, x).expand_as(x)
    total = masked_sum(x, w, dim)
    count = w.sum() if dim is None else w.sum(dim=dim)
    return total / count.clamp_min(torch.finfo(x.dtype).tiny)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked elements of ``x`` (a scalar); Bessel-corrected when ``unbiased``."""
    w = _as_weights(mask, x).expand_as(x)
    mean = masked_mean(x, w)
    var = masked_mean((x - mean) ** 2, w)
    if unbiased:
        n = w.sum()
        if n > 1:
            var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked elements; ``shift_mean=False`` keeps the mean (only rescales).

    Masked-out positions are returned as 0 so they cannot affect later sums.
    """
    w = _as_weights(mask, x).expand_as(x)
    mean = masked_mean(x, w)
    var = masked_var(x, w)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(w != 0, out, torch.zeros((), dtype=x.dtype, device=x.device))


# --------------------------------------------------------------------------- log-probabilities


# Work on blocks of at most this many logits (32 MB in fp32): small enough that the transient
# softmax of one block is cheap, large enough that a [B, T, V] batch takes only a few kernel calls
# (many tiny per-row calls are slow on a busy CPU: every call is a thread-pool barrier).
_BLOCK_ELEMENTS = 1 << 23


def _blocks(b_size: int, t_size: int, v_size: int):
    """Yield (batch slice, time slice) blocks covering [B, T] with ≤ _BLOCK_ELEMENTS logits each."""
    per_seq = t_size * v_size
    if per_seq <= _BLOCK_ELEMENTS:
        step = max(1, _BLOCK_ELEMENTS // max(per_seq, 1))
        for b0 in range(0, b_size, step):
            yield slice(b0, min(b0 + step, b_size)), slice(0, t_size)
        return
    t_step = max(1, _BLOCK_ELEMENTS // v_size)
    for b0 in range(b_size):
        for t0 in range(0, t_size, t_step):
            yield slice(b0, b0 + 1), slice(t0, min(t0 + t_step, t_size))


class _LabelLogProb(torch.autograd.Function):
    """log softmax(logits)[label] with a hand-written backward that allocates only the gradient.

    Forward: a log-softmax per block of positions, of which only the label's entry is kept (the
    block's temporary is freed at once; nothing [B, T, V] is saved besides the logits themselves,
    which the caller keeps alive anyway).
    Backward: d/dlogits = g · (onehot(label) − softmax), softmax recomputed per block and written
    into the gradient buffer that autograd needs in any case.
    Half-precision inputs are computed in float32 per block and the gradient cast back.
    (Fused log_softmax/softmax kernels on purpose: torch.logsumexp is several times slower on CPU.)
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out_dtype = torch.promote_types(logits.dtype, torch.float32)
        out = torch.empty(labels.shape, dtype=out_dtype, device=logits.device)
        for bs, ts in _blocks(*logits.shape):
            block_logp = logits[bs, ts].to(out_dtype).log_softmax(-1)
            out[bs, ts] = block_logp.gather(-1, labels[bs, ts].unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(logits, labels)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        logits, labels = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for bs, ts in _blocks(*logits.shape):
            g = grad_out[bs, ts].unsqueeze(-1)  # [b, t, 1]
            probs = logits[bs, ts].to(grad_out.dtype).softmax(-1)  # [b, t, V]
            probs.mul_(-g)
            probs.scatter_add_(-1, labels[bs, ts].unsqueeze(-1), g)
            grad[bs, ts].copy_(probs)
        return grad, None


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., label] for every position: [B, T, V], [B, T] -> [B, T].

    Why not ``logits.log_softmax(-1).gather(...)``: that builds and keeps for backward a second
    [B, T, V] tensor (hundreds of MB for a 50k vocabulary). Here the log-softmax is computed a
    block at a time and only the label's entry is kept; the backward pass writes the gradient
    directly (see ``_LabelLogProb``). Extra memory: one block (≤ 32 MB in fp32) at a time.
    fp16/bf16 logits are computed in float32 and the result is float32. A [T, V], [T] pair
    (one sequence) is accepted too.
    """
    if logits.dim() not in (2, 3) or logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} does not match labels shape {tuple(labels.shape)} "
            "(expected logits [B, T, V] and labels [B, T])"
        )
    if logits.dim() == 2:  # a single sequence [T, V]
        return _LabelLogProb.apply(logits.unsqueeze(0), labels.long().unsqueeze(0)).squeeze(0)
    return _LabelLogProb.apply(logits, labels.long())


def sequence_logps(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Log-probability of each sequence's response: [B, T, V], [B, T], [B, T] -> [B].

    Token t is predicted by the logits at position t−1, so the first token never counts.
    Only tokens with ``response_mask[b, t] == 1`` are summed (prompt and padding are excluded).
    ``average=True`` divides by the number of response tokens (length-normalised log-prob).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if input_ids.shape != logits.shape[:2] or response_mask.shape != input_ids.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, input_ids {tuple(input_ids.shape)}, "
            f"response_mask {tuple(response_mask.shape)} (expected [B, T, V], [B, T], [B, T])"
        )
    per_token = token_logps(logits[:, :-1, :], input_ids[:, 1:])
    mask = response_mask[:, 1:]
    if average:
        return masked_mean(per_token, mask, dim=-1)
    return masked_sum(per_token, mask, dim=-1)


# --------------------------------------------------------------------------- KL estimators

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-sample estimate of KL(π ‖ π_ref) from log-probs of samples drawn from π.

    log r = ref_logp − logp. k1 = −log r; k2 = ½(log r)²; k3 = (r − 1) − log r (Schulman 2020).
    Elementwise: average it (e.g. with ``masked_mean``) to get the KL estimate.
    """
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    if kind == "k3":
        # expm1 keeps (r − 1) accurate when r ≈ 1 (policy close to the reference).
        return torch.expm1(log_r) - log_r
    raise ValueError(f"kl estimator kind must be one of {KL_ESTIMATORS}, got {kind!r}")


# --------------------------------------------------------------------------- ranking likelihoods


def default_ranks(mask: torch.Tensor) -> torch.Tensor:
    """Ranks 0, 1, …, K−1 per row: the rows are already ordered best → worst."""
    b, k = mask.shape
    return torch.arange(k, device=mask.device).expand(b, k)


def _check_ranking_args(scores: torch.Tensor, mask: torch.Tensor, ranks: torch.Tensor | None, name: str):
    if scores.dim() != 2:
        raise ValueError(f"{name} must be [B, K], got shape {tuple(scores.shape)}")
    if mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal {name} shape {tuple(scores.shape)}")
    if ranks is not None and ranks.shape != scores.shape:
        raise ValueError(f"ranks shape {tuple(ranks.shape)} must equal {name} shape {tuple(scores.shape)}")
    valid = mask.bool()
    ranks = default_ranks(valid) if ranks is None else ranks.to(scores.device)
    # Replace masked-out scores so garbage (even NaN) there cannot reach the loss or its gradient.
    clean = torch.where(valid, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    return clean, valid, ranks


def pairwise_logistic_nll(
    scores: torch.Tensor, mask: torch.Tensor, ranks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row mean of −log σ(s_i − s_j) over pairs where i is ranked strictly better than j.

    Returns (row_loss [B], pairs [B, K, K] bool, diffs [B, K, K]) where pairs[b, i, j] marks the
    pairs used (both valid, rank_i < rank_j; tied pairs are skipped) and diffs = s_i − s_j.
    Rows without any pair get loss 0.
    """
    s, valid, ranks = _check_ranking_args(scores, mask, ranks, "scores")
    both = valid.unsqueeze(2) & valid.unsqueeze(1)
    pairs = both & (ranks.unsqueeze(2) < ranks.unsqueeze(1))
    diffs = s.unsqueeze(2) - s.unsqueeze(1)
    row = masked_mean(-F.logsigmoid(diffs), pairs, dim=(1, 2))
    return row, pairs, diffs


def plackett_luce_nll(
    scores: torch.Tensor, mask: torch.Tensor, ranks: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row Plackett–Luce negative log-likelihood: −Σ_k [s_k − log Σ_{i: rank_i ≥ rank_k} e^{s_i}].

    scores, mask, ranks: [B, K]; ranks default to the column order (best first). Only valid
    positions take part. Ties: Breslow (a tied group shares one denominator; see module notes).
    Returns [B]; a row with a single valid item has loss 0.
    """
    s, valid, ranks = _check_ranking_args(scores, mask, ranks, "scores")
    k = s.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=s.device)
    # risk[b, k, i]: item i is still "in the race" when item k is picked.
    risk = valid.unsqueeze(1) & (ranks.unsqueeze(1) >= ranks.unsqueeze(2))
    # Each position is always in its own risk set, so every logsumexp has a finite term
    # (keeps masked-out rows free of -inf/NaN in the forward and backward pass).
    risk = risk | eye
    neg_inf = torch.tensor(float("-inf"), dtype=s.dtype, device=s.device)
    denom = torch.logsumexp(torch.where(risk, s.unsqueeze(1).expand(-1, k, -1), neg_inf), dim=-1)
    return -masked_sum(s - denom, valid, dim=1)
