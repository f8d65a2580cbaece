"""Score (prompt, completion) pairs with a trained reward model (OUTPUT/final of `prefloop reward`).

The text is tokenized exactly as in training (`prefloop.data.tokenize.encode`: the chat
template when the tokenizer has one, the end-of-turn token after the response), so the
scores are on the scale the model learned, with mean 0 over its training responses.

The reward model has its own tokenizer (MiniLM's WordPiece, SmolLM2's BPE, ...), which may differ
from the policy's: it scores the decoded text, never the policy's token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from prefloop.data.records import PromptText


class RewardModelScorer:
    """A `RewardFn` backed by an AutoModelForSequenceClassification with one output.

    A directory whose tokenizer or model cannot be loaded raises `RewardError` naming it.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 16,
        max_length: int = 512,
        max_prompt_length: int = 256,
        device: str = "auto",
        name: str | None = None,
    ):
        from prefloop.models.load import ModelLoadError, load_reward_model, load_tokenizer, resolve_device
        from prefloop.rewards.base import RewardError

        self.path = Path(path)
        self.name = name or f"rm:{path}"
        self.device = resolve_device(device)
        try:
            self.tokenizer = load_tokenizer(str(path))
        except (ModelLoadError, OSError, ValueError) as exc:
            raise RewardError(
                f"reward model {str(path)!r}: cannot load its tokenizer: {' '.join(str(exc).split())}"
            ) from None
        try:
            self.model = load_reward_model(str(path)).to(self.device).eval()
        except (ModelLoadError, OSError, ValueError) as exc:
            raise RewardError(
                f"reward model {str(path)!r}: cannot load the model: {' '.join(str(exc).split())}"
            ) from None
        self.batch_size = batch_size
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length

    @torch.no_grad()
    def __call__(self, prompts: Sequence[PromptText], completions: Sequence[str]) -> list[float]:
        from prefloop.data.tokenize import encode, pad_batch

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        seqs = [
            encode(self.tokenizer, p, c, self.max_length, self.max_prompt_length)
            for p, c in zip(prompts, completions)
        ]
        scores: list[float] = []
        for i in range(0, len(seqs), self.batch_size):
            batch = pad_batch(seqs[i : i + self.batch_size], self.tokenizer.pad_token_id)
            out = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            )
            scores.extend(out.logits[:, 0].float().tolist())
        return scores
