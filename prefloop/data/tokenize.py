"""Tokenize (prompt, response) pairs for training and prompts for generation; pad batches.

With a chat template (instruct models such as SmolLM2):
    prompt ids   = template(messages, add_generation_prompt=True)
    full ids     = template(messages + [assistant: response])
    response ids = full ids after the prompt ids, cut right after the template's last
                   special token (its end-of-turn, e.g. <|im_end|>; eos appended if there
                   is none). The template's trailing "\\n" after <|im_end|> is dropped:
                   generation stops at <|im_end|>, so the model never produces it.
If the full ids do not start with the prompt ids (a template that rewrites earlier
turns), the response falls back to tokenize(response) + eos. A string prompt becomes
one user message.

Without a chat template (base models): prompt ids = tokenize(prompt text) with the
tokenizer's special tokens (e.g. BOS); response ids = tokenize(response) + eos. The two
are tokenized separately so that training sees exactly the prompt ids that
`encode_prompt` hands to generation.

Truncation: the prompt keeps its leading special tokens (BOS, [CLS], a chat template's
first <|im_start|>: models read them, e.g. an encoder's pooler reads [CLS]) and then its LAST
tokens (the question, the closing [SEP] and the assistant header sit at the end), up to
`max_prompt_length`; then the response keeps its FIRST tokens up to `max_length` in total.
A cut response loses its end-of-turn token, which is right: it did not end there.
Generation (`encode_prompt`) and training (`encode`) cut prompts the same way.

The mask convention: `response_mask[t] = 1` when token t belongs to the response, i.e.
is a token the policy produced and is trained on (its log-prob comes from logits t-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefloop.data.records import Message, PromptText

__all__ = [
    "TokenizedSequence",
    "encode",
    "encode_prompt",
    "has_chat_template",
    "pad_batch",
    "prompt_messages",
    "prompt_text",
    "truncate_prompt",
]


@dataclass
class TokenizedSequence:
    """One prompt + response as token ids; `response_mask` marks the response tokens."""

    input_ids: list[int]
    response_mask: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.input_ids) - sum(self.response_mask)

    @property
    def num_response_tokens(self) -> int:
        return sum(self.response_mask)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_messages(prompt: PromptText) -> list[Message]:
    """A prompt as chat messages: a string becomes a single user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def prompt_text(prompt: PromptText) -> str:
    """A prompt as plain text for tokenizers without a chat template (message contents, one per line)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def _ids(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _render(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
    # tokenize=False then our own tokenization: apply_chat_template's tokenized return
    # type differs across transformers versions (list vs BatchEncoding).
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _prompt_ids(tokenizer: Any, prompt: PromptText) -> list[int]:
    if has_chat_template(tokenizer):
        return _ids(tokenizer, _render(tokenizer, prompt_messages(prompt), True), add_special_tokens=False)
    return _ids(tokenizer, prompt_text(prompt), add_special_tokens=True)


def _end_of_turn(tokenizer: Any, ids: list[int]) -> list[int]:
    """Cut after the template's last special token (its end-of-turn, e.g. <|im_end|>),
    dropping what follows (a newline); with no special token there, append eos."""
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    eos_id = tokenizer.eos_token_id
    if eos_id is not None:
        special.add(eos_id)
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] in special:
            return ids[: i + 1]
    return ids + ([eos_id] if eos_id is not None else [])


def _prompt_and_response_ids(
    tokenizer: Any, prompt: PromptText, response: str
) -> tuple[list[int], list[int]]:
    """Untruncated prompt ids and response ids (ending with eos)."""
    p_ids = _prompt_ids(tokenizer, prompt)
    if has_chat_template(tokenizer):
        messages = prompt_messages(prompt) + [{"role": "assistant", "content": response}]
        full = _ids(tokenizer, _render(tokenizer, messages, False), add_special_tokens=False)
        if len(full) > len(p_ids) and full[: len(p_ids)] == p_ids:
            return p_ids, _end_of_turn(tokenizer, full[len(p_ids) :])
    eos_id = tokenizer.eos_token_id
    r_ids = _ids(tokenizer, response, add_special_tokens=False)
    return p_ids, r_ids + ([eos_id] if eos_id is not None else [])


def _check_lengths(max_length: int | None, max_prompt_length: int | None) -> None:
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be at least 1, got {max_prompt_length}")
    if max_length is not None and max_prompt_length is not None and max_prompt_length >= max_length:
        raise ValueError(
            f"max_prompt_length ({max_prompt_length}) must be smaller than max_length ({max_length}) "
            "so that the response keeps at least one token"
        )


def _special_ids(tokenizer: Any) -> set[int]:
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    for name in ("bos_token_id", "cls_token_id", "eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            special.add(value)
    return special


def truncate_prompt(tokenizer: Any, ids: list[int], keep: int) -> list[int]:
    """At most `keep` prompt ids: its leading special tokens, then its last ordinary ones."""
    if len(ids) <= keep:
        return ids
    special = _special_ids(tokenizer)
    lead = 0
    while lead < len(ids) and ids[lead] in special:
        lead += 1
    lead = min(lead, keep - 1)  # at least the last token stays
    return ids[:lead] + ids[len(ids) - (keep - lead) :]


def encode_prompt(tokenizer: Any, prompt: PromptText, max_prompt_length: int | None = None) -> list[int]:
    """Prompt ids for generation (chat template with the assistant header), keeping the last
    `max_prompt_length` tokens."""
    _check_lengths(None, max_prompt_length)
    ids = _prompt_ids(tokenizer, prompt)
    return truncate_prompt(tokenizer, ids, max_prompt_length) if max_prompt_length is not None else ids


def encode(
    tokenizer: Any,
    prompt: PromptText,
    response: str,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> TokenizedSequence:
    """Prompt + response ids with a mask over the response tokens.

    `max_length` bounds the whole sequence, `max_prompt_length` the prompt (its leading
    special tokens and its end are kept). With `max_length` but no `max_prompt_length`, the prompt may take up to
    max_length - 1 tokens.
    """
    _check_lengths(max_length, max_prompt_length)
    p_ids, r_ids = _prompt_and_response_ids(tokenizer, prompt, response)
    if max_length is not None:
        keep = max_prompt_length if max_prompt_length is not None else max_length - 1
        p_ids = truncate_prompt(tokenizer, p_ids, keep)
        r_ids = r_ids[: max_length - len(p_ids)]
    elif max_prompt_length is not None:
        p_ids = truncate_prompt(tokenizer, p_ids, max_prompt_length)
    return TokenizedSequence(p_ids + r_ids, [0] * len(p_ids) + [1] * len(r_ids))


def pad_batch(seqs: Sequence[TokenizedSequence], pad_id: int, pad_to_multiple_of: int | None = None) -> dict:
    """Right-pad sequences into LongTensors [N, T]: input_ids, attention_mask, response_mask.

    Padding positions get `pad_id`, attention 0 and response 0. `pad_to_multiple_of`
    rounds T up (helps kernels on GPU).
    """
    import torch

    if not seqs:
        raise ValueError("pad_batch needs at least one sequence")
    if pad_id is None:
        raise ValueError("pad_id is None: set tokenizer.pad_token (e.g. to the eos token) first")
    width = max(len(s.input_ids) for s in seqs)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    response_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s.input_ids)
        if len(s.response_mask) != n:
            raise ValueError(f"sequence {i}: response_mask has {len(s.response_mask)} entries, input_ids {n}")
        input_ids[i, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        attention_mask[i, :n] = 1
        response_mask[i, :n] = torch.tensor(s.response_mask, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}
