"""Tiny random Llama models for tests: real architecture and tokenizer, seconds to train.

`tiny_model_dir(kind)` builds, once, a 2-layer Llama (hidden 64, 4 heads, MLP 128) with
the default SmolLM2 tokenizer (so chat templates and special tokens behave exactly as with
the real default model), from a config written here in code and a fixed seed, and caches it
under ``$PREFLOOP_CACHE/tiny-llama-<kind>-v1``. `resolve_model("tiny")` maps to the causal
one and `resolve_model("tiny-reward")` to the sequence-classification one.

Most parameters sit in the embedding (49152 x 64 = 3.1M, tied with the LM head); the
transformer blocks add ~0.1M.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefloop.models.default import build_once, cache_root, default_tokenizer_dir, quiet_transformers

TINY_VERSION = "v1"  # bump when the config below changes, so stale caches are not reused
TINY_SEED = 1234
KINDS = ("causal", "reward")


def tiny_config(vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int):
    """The tiny LlamaConfig (2 layers, hidden 64, 4 heads, 2 KV heads, MLP 128)."""
    from transformers import LlamaConfig

    return LlamaConfig(  # type: ignore[call-arg]  # num_labels is a PretrainedConfig kwarg
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, like SmolLM2
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        num_labels=1,
    )


def tiny_model_dir(kind: str = "causal") -> Path:
    """Directory of the tiny `kind` model ("causal": LlamaForCausalLM, "reward":
    LlamaForSequenceClassification with one label), built on first use."""
    if kind not in KINDS:
        raise ValueError(f"tiny model kind must be one of {KINDS}, got {kind!r}")
    target = cache_root() / f"tiny-llama-{kind}-{TINY_VERSION}"
    return build_once(target, lambda tmp: _write_tiny(tmp, kind))


def _write_tiny(tmp: Path, kind: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

    tok_dir = default_tokenizer_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    config = tiny_config(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    )
    cls = LlamaForCausalLM if kind == "causal" else LlamaForSequenceClassification
    # Seeded initialisation without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = cls(config)
    if getattr(model, "generation_config", None) is not None:  # causal LMs only
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    with quiet_transformers():
        model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    # Keep the chat template file even if the tokenizer saver stores it separately.
    for extra in ("chat_template.jinja",):
        if (tok_dir / extra).is_file() and not (tmp / extra).exists():
            shutil.copy(tok_dir / extra, tmp / extra)
