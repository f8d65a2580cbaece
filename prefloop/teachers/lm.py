"""A causal LM as a chat model for judging: next-token label probabilities and greedy replies.

`LocalChatModel` is what the AI judge runs in-process (`LocalBackend` in `judge.py`) and what
the OpenAI-compatible judge server (`serve.py`) serves, so both paths read the same numbers:

    next_token_logprobs(chats)[i] = log softmax(logits of the token after chat i's assistant
                                    header + bias)                                      [B, V]
    chat(chats, max_tokens)       = greedy continuations (HFGenerator at temperature 0)

Chats are lists of {"role", "content"} messages put through the tokenizer's chat template with
the assistant header. Batches are left-padded with position ids counted from each row's first
real token, so a padded row gives the same distribution as the row alone (tested).
`label_token_ids(label)` lists every vocabulary token whose text, stripped of whitespace, is the
label ("A" and " A" alike), so a label's probability is the sum over its spellings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from prefloop.data.tokenize import encode_prompt

Chat = list[dict[str, str]]


def short_model_name(model: str) -> str:
    """The name a judge is known by: 'smollm2' for the embedded default, else the path's last part."""
    if model == "default":
        return "smollm2"
    return Path(str(model)).name or str(model)


class LocalChatModel:
    """A transformers causal LM behind two calls: label probabilities and greedy chat."""

    def __init__(
        self, model: str = "default", device: str = "cpu", batch_size: int = 8, max_prompt_length: int = 2048
    ):
        from prefloop.models.load import load_causal_lm, load_tokenizer, resolve_device

        self.model_id = str(model)
        self.name = short_model_name(self.model_id)
        self.tokenizer = load_tokenizer(model)
        self.model = load_causal_lm(model).to(resolve_device(device)).eval()
        self.model.requires_grad_(False)
        self.batch_size = batch_size
        self.max_prompt_length = max_prompt_length
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._token_texts: list[str] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, chat: Chat) -> list[int]:
        return encode_prompt(self.tokenizer, chat, self.max_prompt_length)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def label_token_ids(self, label: str) -> list[int]:
        """Ids of every token whose decoded text, whitespace stripped, equals `label`."""
        if self._token_texts is None:
            self._token_texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return [i for i, t in enumerate(self._token_texts) if t.strip() == label]

    @torch.no_grad()
    def next_token_logprobs(
        self, chats: Sequence[Chat], logit_bias: Mapping[int, float] | None = None
    ) -> torch.Tensor:
        """[B, V] log-probabilities of the first assistant token of each chat (float32, on CPU)."""
        out = []
        for start in range(0, len(chats), self.batch_size):
            batch = [self.encode(c) for c in chats[start : start + self.batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, row in enumerate(batch):
                ids[i, width - len(row) :] = torch.tensor(row)
                mask[i, width - len(row) :] = 1
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = (
                self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=position_ids.to(self.device),
                )
                .logits[:, -1, :]
                .float()
            )
            if logit_bias:
                for token_id, bias in logit_bias.items():
                    logits[:, int(token_id)] += float(bias)
            out.append(torch.log_softmax(logits, dim=-1).cpu())
        return torch.cat(out, dim=0)

    def chat(
        self, chats: Sequence[Chat], max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """Replies to each chat: greedy at temperature 0, else sampled (seeded)."""
        from prefloop.generation.hf import HFGenerator

        gen = HFGenerator(
            self.model,
            self.tokenizer,
            max_new_tokens=max_tokens,
            temperature=temperature,
            batch_size=self.batch_size,
            max_prompt_length=self.max_prompt_length,
            progress=False,
        )
        return [c.text for c in gen.generate(list(chats), 1, seed=seed)]
