"""Sampling completions with Hugging Face `generate` (CPU / single device; tests and small runs).

`HFGenerator` implements `prefloop.generation.base.Generator`:
`generate(prompts, num_responses=K, seed=s)` returns K `Completion`s per prompt, prompt-major
(flat; `group_by_prompt` regroups them), each with the prompt ids, the sampled token ids (ending
with the stop token when the model stopped by itself: finish_reason "eos", else "length"), the
decoded text (special tokens stripped) and the per-token log-probabilities under the
distribution they were sampled from:

    token_logprobs[t] = log softmax(process(logits_t))[y_t]

where `process` is what sampling applied (temperature, then top-p truncation). With
temperature 1 and top_p 1 this is the model's own log π(y_t | x, y_<t), equal to a
teacher-forced forward pass over prompt + token_ids. With temperature 0 decoding is greedy and
the log-probs are the model's (temperature 1) log π of the greedy tokens.

Prompts go through the tokenizer's chat template with the assistant header
(`prefloop.data.tokenize.encode_prompt`), are left-padded in batches of `batch_size`
sequences (memory stays bounded whatever K and the number of prompts), and generation
stops at eos or the end-of-turn token (<|im_end|> for ChatML models).

Randomness: the global torch RNG is never touched. `seed=s` fixes the samples: the same seed,
prompts, K and batch size give the same completions. `seed=None` continues the generator's own
stream (started from the constructor's `seed`), which `rng_state()` / `set_rng_state()` save and
restore, so a training loop that checkpoints the state resumes generation exactly.

KV-cache reuse: when a batch holds K consecutive copies of each prompt (K completions per
prompt), each distinct prompt is prefilled once and its KV cache repeated K times
(`share_prompt_cache`, on by default). The samples are the same up to floating-point
summation order of the prefill (same RNG draws, same distributions).
`update_weights` is a no-op when given the model the generator already samples from (the
in-process case: training updates it in place); another module replaces it, a state dict is
loaded into it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch

from prefloop.data.records import PromptText
from prefloop.generation.base import Completion, FinishReason, Generator, group_by_prompt

__all__ = ["Completion", "Generator", "HFGenerator", "group_by_prompt", "stop_token_ids"]


def stop_token_ids(tokenizer) -> list[int]:
    """eos plus the chat end-of-turn token when the vocabulary has one (<|im_end|>, <|eot_id|>...)."""
    from prefloop.models.default import end_of_turn_ids

    return end_of_turn_ids(tokenizer)


def _encode_prompt(tokenizer, prompt: PromptText, max_prompt_length: int | None) -> list[int]:
    from prefloop.data.tokenize import encode_prompt

    return encode_prompt(tokenizer, prompt, max_prompt_length)


class HFGenerator:
    """`Generator` over a transformers causal LM (also a PEFT-wrapped one)."""

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 16,
        max_prompt_length: int | None = None,
        progress: bool | None = None,
        seed: int = 0,
        share_prompt_cache: bool = True,
    ):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be at least 1")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.batch_size, self.max_prompt_length = batch_size, max_prompt_length
        self.progress = progress  # None: a bar only when there is more than one batch
        self.share_prompt_cache = share_prompt_cache  # prefill each prompt once for its K completions
        self.stop_ids = stop_token_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self._stream = self._seeded_state(seed)

    # ----------------------------------------------------------------- public

    def generate(
        self, prompts: Sequence[PromptText], num_responses: int = 1, seed: int | None = None
    ) -> list[Completion]:
        """K = `num_responses` completions for each prompt, prompt-major (see the module notes)."""
        if num_responses < 1:
            raise ValueError(f"num_responses must be at least 1, got {num_responses}")
        encoded = [_encode_prompt(self.tokenizer, p, self.max_prompt_length) for p in prompts]
        # Each prompt repeated K times, consecutively; batches cut through this list.
        flat = [(i, ids) for i, ids in enumerate(encoded) for _ in range(num_responses)]
        starts = list(range(0, len(flat), self.batch_size))
        results: list[Completion] = []
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=self._rng_devices()), torch.no_grad():
                if seed is None:
                    self._load_state(self._stream)
                else:
                    torch.manual_seed(seed)
                for start in self._progress(starts):
                    results.extend(self._generate_batch(flat[start : start + self.batch_size]))
                if seed is None:
                    self._stream = self._current_state()
        finally:
            model.train(was_training)
        return results

    def generate_grouped(
        self, prompts: Sequence[PromptText], num_responses: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        """`generate`, regrouped: one list of K completions per prompt."""
        return group_by_prompt(self.generate(prompts, num_responses, seed), len(prompts))

    def update_weights(self, weights: Any) -> None:
        """Sample from `weights` from now on: the same model (no-op), another module, or a state dict."""
        if weights is self.model:
            return
        if isinstance(weights, torch.nn.Module):
            self.model = weights
        elif isinstance(weights, Mapping):
            # A subset is fine (a LoRA run sends only its adapters); a name the model lacks is not.
            missing = sorted(set(weights) - set(self.model.state_dict()))
            if missing:
                raise KeyError(f"update_weights: the generator's model has no {missing[:3]}")
            self.model.load_state_dict(weights, strict=False)
        else:
            raise TypeError(
                f"update_weights takes a torch module or a state dict, got {type(weights).__name__}"
            )

    def rng_state(self) -> dict[str, Any]:
        """The random stream that `generate(seed=None)` continues (a dict of tensors; torch.save-able)."""
        return {k: (v.clone() if v is not None else None) for k, v in self._stream.items()}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore a stream saved by `rng_state` (e.g. from a checkpoint)."""
        if not isinstance(state, Mapping) or "cpu" not in state:
            raise ValueError("set_rng_state takes the dict returned by rng_state()")
        self._stream = {"cpu": state["cpu"].clone(), "cuda": state.get("cuda")}

    # ----------------------------------------------------------------- pieces

    def _rng_devices(self) -> list[Any]:
        device = self._device()
        return [device] if device.type == "cuda" else []

    def _current_state(self) -> dict[str, Any]:
        device = self._device()
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def _load_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["cpu"])
        device = self._device()
        if device.type == "cuda" and state.get("cuda") is not None:
            torch.cuda.set_rng_state(state["cuda"], device)

    def _seeded_state(self, seed: int) -> dict[str, Any]:
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            return self._current_state()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _progress(self, starts: list[int]):
        if self.progress is False or (self.progress is None and len(starts) < 2):
            return starts
        from tqdm.auto import tqdm

        # disable=None: automatic, i.e. no bar when stderr is not a terminal (logs, tests).
        disable = False if self.progress else None
        return tqdm(starts, desc="generate", unit="batch", file=sys.stderr, leave=False, disable=disable)

    def _left_pad(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            if ids:
                input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                mask[i, width - len(ids) :] = 1
        device = self._device()
        return input_ids.to(device), mask.to(device)

    def _generation_config(self):
        from transformers import GenerationConfig

        sample = self.temperature > 0
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=0 if sample else None,  # no hidden top-k=50 truncation
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            output_scores=True,
            return_dict_in_generate=True,
        )

    def _prefilled_cache(self, batch: list[tuple[int, list[int]]]):
        """The KV cache of each distinct prompt of the batch, computed once and repeated for its K
        completions (None when the batch is not K consecutive copies of each prompt).

        Sampling K completions of one prompt otherwise runs the prompt's prefill K times. The
        cache holds every prompt token but the last; `generate` feeds that one and goes on.
        """
        import itertools

        counts = {len(list(run)) for _, run in itertools.groupby(index for index, _ in batch)}
        if not self.share_prompt_cache or len(counts) != 1 or counts == {1}:
            return None
        k = counts.pop()
        unique = [ids for _, ids in batch[::k]]
        if min(len(ids) for ids in unique) < 2:
            return None
        from transformers import DynamicCache

        input_ids, mask = self._left_pad(unique)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        cache = DynamicCache(config=self.model.config)
        self.model(
            input_ids=input_ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            cache=cache,
            use_cache=True,
        )
        cache.batch_repeat_interleave(k)
        return cache

    def _generate_batch(self, batch: list[tuple[int, list[int]]]) -> list[Completion]:
        input_ids, mask = self._left_pad([ids for _, ids in batch])
        cache = self._prefilled_cache(batch)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            generation_config=self._generation_config(),
            **({"cache": cache} if cache is not None else {}),
        )
        new_tokens = out.sequences[:, input_ids.shape[1] :]
        # scores[t]: [N, V] processed logits for step t (after temperature / top-p). One step at a
        # time: stacking them first would hold two [N, steps, V] float tensors at once.
        token_logps = torch.stack(
            [
                torch.log_softmax(score.to(torch.promote_types(score.dtype, torch.float32)), dim=-1)
                .gather(-1, new_tokens[:, t : t + 1])
                .squeeze(-1)
                for t, score in enumerate(out.scores)
            ],
            dim=1,
        )
        return [
            self._completion(new_tokens[i].tolist(), token_logps[i], prompt_ids, prompt_index)
            for i, (prompt_index, prompt_ids) in enumerate(batch)
        ]

    def _completion(
        self,
        tokens: list[int],
        token_logps: torch.Tensor,
        prompt_ids: list[int] | None = None,
        prompt_index: int = 0,
    ) -> Completion:
        """Cut after the first stop token (later positions are padding of finished rows)."""
        length, reason = len(tokens), cast(FinishReason, "length")
        for t, tok in enumerate(tokens):
            if tok in self.stop_ids:
                length, reason = t + 1, cast(FinishReason, "eos")
                break
        ids = tokens[:length]
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Completion(
            text=text,
            token_ids=ids,
            token_logprobs=token_logps[:length].tolist(),
            prompt_token_ids=list(prompt_ids or []),
            finish_reason=reason,
            prompt_index=prompt_index,
        )


def load_generator(
    model: str | Any, dtype: str = "float32", device: str = "auto", **options: Any
) -> HFGenerator:
    """An `HFGenerator` over the causal LM `model` (a spec or path as `load_causal_lm` takes it),
    loaded in `dtype` on `device`; `options` are HFGenerator's sampling settings."""
    from prefloop.models.load import load_causal_lm, load_tokenizer, resolve_device, torch_dtype

    tokenizer = load_tokenizer(model)
    lm = load_causal_lm(model, dtype=torch_dtype(dtype)).to(resolve_device(device))
    return HFGenerator(lm, tokenizer, **options)
