"""Padding-free packed batches with prefix sharing: the same log-probs and rewards with less work.

Why
---
A padded batch [N, T] spends compute on padding (28% of the token slots on the DPO benchmark's
chat pairs, where rejected replies are short), and a pair's chosen and rejected sequences run
their common prompt twice. Here the N sequences are laid out as ONE row of S tokens with no
padding, and sequences that start with the same tokens (a prompt and its K responses) store that
common prefix once:

    row:        [ prompt | chosen reply | rejected reply | prompt' | chosen' | rejected' ... ]
    positions:  [ 0 .. p-1 | p .. p+c-1 | p .. p+r-1   | 0 .. ...                          ]

Every linear layer (≈ 90% of the FLOPs of a 135M model at these lengths) then runs on exactly
the S distinct tokens. Attention is the only place where sequences must not see each other: the
custom attention function registered here (`ATTN_IMPLEMENTATION`) gathers each sequence's own
tokens - its prefix positions followed by its own suffix - into a small [N, H, T_max, D] block,
runs scaled-dot-product attention on it (causal; or with a key-padding mask for encoders),
and scatters each packed position's output back from the sequence that owns it. Positions of a
shared prefix have the same hidden states in every sequence that shares it (causal attention
sees only the prefix), so any owner gives the same value; their key/value gradients add up
over every sequence that reads them, exactly as they would in the padded batch.

So the math is unchanged: each response token sees exactly the tokens it sees in a padded
batch, at the same position ids. Only the summation order of floating point sums differs
(tests/models/test_packing.py checks log-probs, rewards and gradients against the padded
computation on a tiny model).

Prefix sharing needs causal attention; for encoders (BERT/MiniLM) `pack` is called with
`share_prefix=False` and gives padding-free packing only.

When `packed_layout` is not passed (generation, unpacked batches) the registered attention
function is PyTorch SDPA exactly as transformers' "sdpa" implementation runs it.

Shapes
------
`pack(seqs)` -> `PackedBatch` with input_ids / position_ids [1, S], gather [N, T_max]
(packed position of token t of sequence n; padding entries point anywhere, causal masking or the
key mask makes them unseen), owner [S] (flat index n·T_max + t that position's output comes
from), key_mask [N, T_max], and for the losses loss_pos / loss_targets / loss_rows [M] (the
packed position predicting each response token, the token, its sequence), last_pos / first_pos [N].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prefloop.data.tokenize import TokenizedSequence

ATTN_IMPLEMENTATION = "prefloop_packed"


@dataclass
class PackedBatch:
    """One packed row of N sequences (see the module docstring for every field's shape)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    gather: torch.Tensor
    owner: torch.Tensor
    key_mask: torch.Tensor
    loss_pos: torch.Tensor
    loss_targets: torch.Tensor
    loss_rows: torch.Tensor
    last_pos: torch.Tensor
    first_pos: torch.Tensor
    causal: bool

    @property
    def num_sequences(self) -> int:
        return self.gather.shape[0]

    @property
    def num_slots(self) -> int:
        """Token positions the model runs on (S)."""
        return self.input_ids.shape[1]

    def to(self, device: torch.device | str) -> PackedBatch:
        fields: dict[str, Any] = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }
        return PackedBatch(**fields)


def pack(seqs: Sequence[TokenizedSequence], share_prefix: bool = True, causal: bool = True) -> PackedBatch:
    """Lay out sequences as one padding-free row, in order; with `share_prefix` each distinct prefix
    is stored once.

    Sharing builds a prefix tree over the token ids: a token gets a new packed position only
    when no earlier sequence had the same token after the same prefix. A pair's chosen and
    rejected replies then share their prompt, and every sequence of a batch shares the chat
    template's system turn. Sharing needs `causal` attention (a token's state must depend on its
    prefix only).
    """
    if share_prefix and not causal:
        raise ValueError("prefix sharing needs causal attention (an encoder's prompt tokens see the reply)")
    if not seqs:
        raise ValueError("pack needs at least one sequence")
    t_max = max(len(s.input_ids) for s in seqs)
    ids: list[int] = []
    positions: list[int] = []
    owner: list[int] = []
    gather = torch.zeros(len(seqs), t_max, dtype=torch.long)
    key_mask = torch.zeros(len(seqs), t_max, dtype=torch.bool)
    loss_pos: list[int] = []
    loss_targets: list[int] = []
    loss_rows: list[int] = []
    last_pos: list[int] = []
    first_pos: list[int] = []
    tree: dict[tuple[int, int], int] = {}  # (packed position of the previous token, token) -> position
    for n, seq in enumerate(seqs):
        if len(seq.response_mask) != len(seq.input_ids):
            raise ValueError(f"sequence {n}: response_mask and input_ids differ in length")
        where: list[int] = []
        parent = -1
        for t, token in enumerate(seq.input_ids):
            pos = tree.get((parent, token)) if share_prefix else None
            if pos is None:
                pos = len(ids)
                ids.append(token)
                positions.append(t)
                owner.append(n * t_max + t)
                if share_prefix:
                    tree[(parent, token)] = pos
            if t > 0 and seq.response_mask[t]:
                loss_pos.append(parent)
                loss_targets.append(token)
                loss_rows.append(n)
            where.append(pos)
            parent = pos
        gather[n, : len(where)] = torch.tensor(where, dtype=torch.long)
        key_mask[n, : len(where)] = True
        last_pos.append(where[-1])
        first_pos.append(where[0])

    def long(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long)

    return PackedBatch(
        input_ids=long(ids).unsqueeze(0),
        position_ids=long(positions).unsqueeze(0),
        gather=gather,
        owner=long(owner),
        key_mask=key_mask,
        loss_pos=long(loss_pos),
        loss_targets=long(loss_targets),
        loss_rows=long(loss_rows),
        last_pos=long(last_pos),
        first_pos=long(first_pos),
        causal=causal,
    )


# --------------------------------------------------------------------------- attention


def packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for transformers' AttentionInterface: per-sequence SDPA over a packed row.

    query [1, H, S, D], key/value [1, H_kv, S, D] -> ([1, S, H, D], None). Without a
    `packed_layout` keyword it is transformers' own SDPA attention.
    """
    layout: PackedBatch | None = kwargs.pop("packed_layout", None)
    if layout is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    heads, head_dim = query.shape[1], query.shape[3]

    def per_sequence(x: torch.Tensor) -> torch.Tensor:  # [1, h, S, D] -> [N, h, T_max, D]
        return x[0][:, layout.gather].transpose(0, 1)

    q, k, v = per_sequence(query), per_sequence(key), per_sequence(value)
    mask = None if layout.causal else layout.key_mask[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        dropout_p=dropout if module.training else 0.0,
        is_causal=layout.causal,
        scale=scaling,
        enable_gqa=k.shape[1] != heads,
    )
    out = out.transpose(1, 2).reshape(-1, heads, head_dim)[layout.owner]  # [S, H, D]
    return out.unsqueeze(0), None


def register() -> None:
    """Make `ATTN_IMPLEMENTATION` known to transformers (attention and mask functions); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if ATTN_IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(ATTN_IMPLEMENTATION, packed_attention)
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def enable_packing(model) -> bool:
    """Switch `model` (a transformers model or a PEFT wrapper) to the packed attention.

    Returns False, changing nothing, when the model's attention does not go through
    transformers' attention interface (then callers keep padded batches).
    """
    register()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_supports_attention_backend", False) and not getattr(base, "_supports_sdpa", False):
        return False
    base.set_attn_implementation(ATTN_IMPLEMENTATION)
    return True


def is_packing_enabled(model) -> bool:
    model = getattr(model, "module", model)  # a data-parallel wrapper (DDP, DeepSpeed engine) runs its module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION


def _forward_kwargs(layout: PackedBatch) -> dict:
    """Inputs of a packed forward. The 1×1×1×1 4D mask makes transformers skip building a mask
    (a 4D mask is taken as prepared); the packed attention ignores it."""
    placeholder = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=layout.input_ids.device)
    return {
        "input_ids": layout.input_ids,
        "position_ids": layout.position_ids,
        "attention_mask": placeholder,
        "packed_layout": layout,
    }


def packed_hidden(body, layout: PackedBatch) -> torch.Tensor:
    """Last hidden states [S, d] of a model body (LlamaModel, BertModel, ...) on a packed row."""
    return body(**_forward_kwargs(layout)).last_hidden_state[0]


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def packed_response_logps(
    model, layout: PackedBatch, average: bool = False, chunk_tokens: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(response | prompt) per sequence [N], response token counts [N]) from a packed row.

    The packed counterpart of `response_logps` on the padded batch: the LM head runs only at the
    positions that predict response tokens, in checkpointed chunks of `chunk_tokens` (one chunk's
    [chunk_tokens, V] logits and their gradient alive at a time: 128 × 49152 fp32 = 25 MB).
    """
    from prefloop.models.logps import _split_lm, head_logps

    parts = _split_lm(model)
    if parts is None:  # logits post-processed after the head: take them from the model's forward
        logits = model(**_forward_kwargs(layout)).logits[0]
        tok = torch.log_softmax(logits[layout.loss_pos].float(), dim=-1)
        tok = tok.gather(-1, layout.loss_targets.unsqueeze(-1)).squeeze(-1)
    else:
        body, head = parts
        picked = packed_hidden(body, layout)[layout.loss_pos]
        tok, _ = head_logps(head, picked, layout.loss_targets, chunk_tokens)
    n = layout.num_sequences
    sums = torch.zeros(n, dtype=tok.dtype, device=tok.device).index_add(0, layout.loss_rows, tok)
    counts = torch.bincount(layout.loss_rows, minlength=n)
    if average:
        sums = sums / counts.clamp_min(1)
    return sums, counts


def packed_rewards(model, layout: PackedBatch) -> torch.Tensor:
    """Scalar rewards [N] of a sequence classifier (num_labels=1) on a packed row.

    Decoder classifiers (a `score` head, e.g. Llama) read the last token of each sequence;
    BERT-style classifiers pool the first token ([CLS]) and apply dropout and the classifier,
    as their own forward does. A `reward_bias` in the config (see `models.load`) is added.
    """
    base = _unwrap(model)
    body = getattr(base, base.base_model_prefix)
    hidden = packed_hidden(body, layout)
    if hasattr(base, "score"):
        logits = base.score(hidden[layout.last_pos])
    elif hasattr(base, "classifier") and getattr(body, "pooler", None) is not None:
        pooled = body.pooler(hidden[layout.first_pos].unsqueeze(1))
        logits = base.classifier(base.dropout(pooled))
    else:
        raise TypeError(f"packed rewards: no known scalar head on {type(base).__name__}")
    bias = float(getattr(base.config, "reward_bias", 0.0) or 0.0)
    return logits[:, 0].float() + bias


def supports_packed_rewards(model) -> bool:
    if getattr(model, "prefloop_whole_forward", False):
        return False  # sharded (prefloop.dist): the body alone would skip the root's weight gather
    base = _unwrap(model)
    body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if body is None:
        return False
    return hasattr(base, "score") or (
        hasattr(base, "classifier") and getattr(body, "pooler", None) is not None
    )


def is_causal_model(model) -> bool:
    """Whether the model's self-attention is causal (decoders) rather than bidirectional (encoders)."""
    for module in _unwrap(model).modules():
        flag = getattr(module, "is_causal", None)
        if isinstance(flag, bool) and hasattr(module, "forward") and "Attention" in type(module).__name__:
            return flag
    return True


def sequence_logps(
    model,
    seqs: Sequence[TokenizedSequence],
    pad_id: int,
    device: torch.device | str,
    average: bool = False,
    share_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(response log-prob per sequence [N], response token counts [N]) in one forward pass.

    Packed (and prefix-shared when `share_prefix`) when `enable_packing(model)` was called,
    else a right-padded [N, T] batch through `response_logps`. Same values either way.
    """
    if is_packing_enabled(model):
        layout = pack(seqs, share_prefix=share_prefix).to(device)
        return packed_response_logps(model, layout, average=average)
    from prefloop.data.tokenize import pad_batch
    from prefloop.models.logps import response_logps

    batch = {k: v.to(device) for k, v in pad_batch(seqs, pad_id).items()}
    return response_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], average=average
    )


def sequence_rewards(
    model,
    seqs: Sequence[TokenizedSequence],
    pad_id: int,
    device: torch.device | str,
    share_prefix: bool = True,
) -> torch.Tensor:
    """Scalar rewards [N] of a sequence classifier in one forward pass (packed when enabled).

    Prefix sharing applies to causal backbones only; an encoder is packed without it.
    """
    if is_packing_enabled(model) and supports_packed_rewards(model):
        causal = is_causal_model(model)
        layout = pack(seqs, share_prefix=share_prefix and causal, causal=causal).to(device)
        return packed_rewards(model, layout)
    from prefloop.data.tokenize import pad_batch

    batch = {k: v.to(device) for k, v in pad_batch(seqs, pad_id).items()}
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
