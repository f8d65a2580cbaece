"""Sampling from the geometric mixture of two causal LMs (Nash-MD's alternative policy).

    log π_mix(y_t | x, y_<t) = log softmax( (1 − α) · log π_θ(·|x, y_<t) + α · log π_ref(·|x, y_<t) )[y_t]

per token, both models run incrementally with their own KV caches; α = 0 samples the policy,
α = 1 the reference. `reference` is a `prefloop.models.reference.Reference` (a frozen copy, or
the LoRA policy with its adapters disabled). Prompts go through the chat template
(`encode_prompt`), are left-padded with position ids counted from each row's first real token,
and sampling stops at eos / end-of-turn or after `max_new_tokens`. Temperature divides both
models' logits before they are mixed. Seeded with a private `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefloop.data.records import PromptText


@torch.no_grad()
def sample_geometric_mixture(
    policy: torch.nn.Module,
    reference,
    tokenizer,
    prompts: Sequence[PromptText],
    mixture: float,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """One reply per prompt from π_mix (see the module docstring)."""
    from prefloop.data.tokenize import encode_prompt
    from prefloop.generation.hf import stop_token_ids

    if not 0.0 <= mixture <= 1.0:
        raise ValueError(f"mixture must be in [0, 1], got {mixture}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(policy.parameters()).device
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    stops = torch.tensor(stop_token_ids(tokenizer), device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = policy.training
    policy.eval()
    past_p = past_r = None
    cur, out = ids, []
    finished = torch.zeros(len(encoded), dtype=torch.bool, device=device)
    try:
        for _ in range(max_new_tokens):
            lp = policy(
                input_ids=cur, attention_mask=mask, position_ids=pos, past_key_values=past_p, use_cache=True
            )
            past_p = lp.past_key_values
            lr = reference.apply(
                lambda m, cur=cur, mask=mask, pos=pos, past=past_r: m(
                    input_ids=cur, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True
                )
            )
            past_r = lr.past_key_values
            mixed = (1 - mixture) * torch.log_softmax(lp.logits[:, -1].float() / temperature, -1)
            mixed = mixed + mixture * torch.log_softmax(lr.logits[:, -1].float() / temperature, -1)
            probs = torch.softmax(mixed, -1).cpu()
            nxt = torch.multinomial(probs, 1, generator=gen).to(device)
            nxt[finished] = pad
            out.append(nxt)
            finished |= torch.isin(nxt.squeeze(1), stops)
            if bool(finished.all()):
                break
            cur = nxt
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            pos = pos[:, -1:] + 1
    finally:
        policy.train(was_training)
    tokens = torch.cat(out, dim=1).tolist() if out else [[] for _ in encoded]
    texts = []
    for row in tokens:
        cut = next((t for t, tok in enumerate(row) if tok in set(stops.tolist())), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts
