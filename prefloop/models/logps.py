"""Log-probabilities of response tokens under a causal LM, without materializing [B, T, V] logits.

`response_token_logps` gives log π(y_t | x, y_<t) at every response position ([B, T], zero
elsewhere); `response_logps` sums (or averages) them per sequence. Token t is predicted from
position t−1. When the model is a decoder body plus a plain linear LM head, the head runs only
on the hidden states that predict response tokens, in chunks of `chunk_tokens`, each recomputed
in the backward pass, so the peak extra memory is one [chunk_tokens, V] block. Models whose
logits are post-processed after the head (soft-capping, logit scale) go through their own forward.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch


def _split_lm(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(decoder body, LM head) of a causal LM, or None when the head is not a plain linear map
    or the model must run its whole forward (`prefloop_whole_forward`: set by prefloop.dist on
    sharded models, whose root forward gathers the weights the body and head share)."""
    if getattr(model, "prefloop_whole_forward", False):
        return None
    peft: Any = model  # a PEFT wrapper exposes the transformers model as get_base_model()
    base: Any = peft.get_base_model() if hasattr(peft, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None  # logits are post-processed after the head: use the model's own forward
    head = base.get_output_embeddings()
    body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if head is None or body is None or body is base:
        return None
    return body, head


def _logps_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each target [N] and, when asked, the entropy [N] of the rows of logits [N, V]."""
    lse = torch.logsumexp(logits, dim=-1)
    logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logps, None
    return logps, lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def _head_logps(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _logps_and_entropy(head(hidden).float(), targets, with_entropy)


def head_logps(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probs [N], entropies [N] or None) of `targets` [N] from hidden states [N, H] through `head`.

    The head runs in chunks of `chunk_tokens` rows, each recomputed in the backward pass when a
    gradient is needed, so one [chunk_tokens, V] block of logits is alive at a time. Every path
    (padded, packed, online) computes its response log-probs here.
    """
    tok_chunks, ent_chunks = [], []
    for i in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[i : i + chunk_tokens], targets[i : i + chunk_tokens]
        if torch.is_grad_enabled() and h.requires_grad:
            lp, en = torch.utils.checkpoint.checkpoint(
                _head_logps, head, h, t, with_entropy, use_reentrant=False
            )
        else:
            lp, en = _head_logps(head, h, t, with_entropy)
        tok_chunks.append(lp)
        ent_chunks.append(en)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    tok = torch.cat(tok_chunks) if tok_chunks else empty
    if not with_entropy:
        return tok, None
    return tok, (torch.cat(ent_chunks) if ent_chunks else empty)


def _flat_response_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(target mask [B, T-1], log-probs of the response tokens in row-major order [N], entropies [N] or None)."""
    target_mask = response_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    parts = _split_lm(model)
    if parts is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][target_mask].float()
        tok, ent = _logps_and_entropy(logits, targets, with_entropy)
        return target_mask, tok, ent
    body, head = parts
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    tok, ent = head_logps(head, hidden[:, :-1][target_mask], targets, chunk_tokens, with_entropy)
    return target_mask, tok, ent


def _scatter(target_mask: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Flat values of the response tokens -> [B, T] with 0 elsewhere (position 0 predicts nothing)."""
    b, t = target_mask.shape
    out = flat.new_zeros(b, t + 1)
    out[:, 1:] = out[:, 1:].masked_scatter(target_mask, flat)
    return out


@overload
def response_token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = ...,
    with_entropy: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def response_token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = ...,
    *,
    with_entropy: Literal[True],
) -> tuple[torch.Tensor, torch.Tensor]: ...


def response_token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = 1024,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log π(input_ids[:, t] | input_ids[:, :t]) at response positions, [B, T] float32, 0 elsewhere.

    `response_mask` [B, T] is 1 on response tokens (position 0 is never one: it has no context).
    With `with_entropy`, also the entropy of the predicting distribution at the same positions
    ([B, T], 0 elsewhere, differentiable) from the same chunk of logits: no extra head pass.
    """
    target_mask, tok, ent = _flat_response_logps(
        model, input_ids, attention_mask, response_mask, chunk_tokens, with_entropy
    )
    if ent is None:
        return _scatter(target_mask, tok)
    return _scatter(target_mask, tok), _scatter(target_mask, ent)


def response_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
    chunk_tokens: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(response | prompt) per sequence [B], response token counts [B]).

    The sum of `response_token_logps` over each row, accumulated token by token in sequence
    order (`index_add`), so the value does not depend on how much padding the batch has.
    `average=True` returns the mean log-prob per response token instead.
    """
    target_mask, tok, _ = _flat_response_logps(
        model, input_ids, attention_mask, response_mask, chunk_tokens, with_entropy=False
    )
    rows = target_mask.nonzero()[:, 0]
    sums = torch.zeros(input_ids.shape[0], dtype=tok.dtype, device=tok.device).index_add(0, rows, tok)
    counts = target_mask.sum(dim=1)
    if average:
        sums = sums / counts.clamp_min(1)
    return sums, counts
