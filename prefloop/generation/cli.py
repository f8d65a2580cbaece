"""`prefloop generate`: sample K responses per prompt from a model into a JSONL file.

Output lines look like
    {"prompt": ..., "responses": [{"text": ..., "model": "<--model-name, else --model as given>", "logprob": -12.3}, ...]}
which is what the feedback server imports for ranking and what `read_records` reads back
as prompt + responses (ranks missing until someone ranks them).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass
class GenerateConfig:
    """Sample K responses per prompt from a causal LM and write them as JSONL."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Model to sample from: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a local path or a hub id."""
    model_name: str | None = None
    """Name stored with each response (leaderboards rank by it); None: --model as given. Use it to tell apart
    runs of one model with different settings, e.g. 'smollm2-t0.3'."""
    data: str = ""
    """Prompts: a .jsonl/.json/.parquet file or HF datasets dir with a 'prompt' field (string or chat messages)."""
    output: str = "generations.jsonl"
    """JSONL file to write: one line per prompt with its responses."""
    num_responses: int = 4
    """Responses sampled per prompt (K)."""
    max_new_tokens: int = 48
    """Maximum tokens per response (generation also stops at the end-of-turn token)."""
    temperature: float = 1.0
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest token set with this much probability (1 = off)."""
    seed: int = 0
    """Seed for sampling: same seed, model and prompts give the same responses."""
    batch_size: int = 16
    """Sequences generated together (bounds memory; prompts x K are split into batches)."""
    max_prompt_length: int | None = None
    """Keep only the last N prompt tokens (None: the whole prompt)."""
    limit: int | None = None
    """Use only the first N prompts (None: all)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Model weights' dtype (float32 on CPU)."""
    device: str = "auto"
    """'auto' (cuda if available, else cpu), 'cpu' or 'cuda[:i]'."""


def read_prompts(path: str | Path) -> list[Any]:
    """Prompts (str or chat messages) from any format `prefloop.data.io.read_records` reads."""
    from prefloop.data.io import read_records

    return [record.prompt for record in read_records(path, kind="prompt")]


def run(cfg: GenerateConfig) -> Path:
    """Generate and write `cfg.output`; returns its path."""
    from prefloop.generation.hf import load_generator

    if not cfg.data:
        raise FileNotFoundError("no prompts given: pass --data prompts.jsonl")
    if cfg.num_responses < 1:
        raise ValueError(f"--num-responses must be at least 1, got {cfg.num_responses}")
    prompts = read_prompts(cfg.data)
    if cfg.limit is not None:
        prompts = prompts[: cfg.limit]
    generator = load_generator(
        cfg.model,
        cfg.dtype,
        cfg.device,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
        max_prompt_length=cfg.max_prompt_length,
    )
    started = time.perf_counter()
    completions = generator.generate_grouped(prompts, num_responses=cfg.num_responses, seed=cfg.seed)
    elapsed = time.perf_counter() - started
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    name = cfg.model_name or cfg.model
    with tmp.open("w", encoding="utf-8") as f:
        for prompt, comps in zip(prompts, completions):
            responses = [{"text": c.text, "model": name, "logprob": round(c.logprob, 6)} for c in comps]
            f.write(json.dumps({"prompt": prompt, "responses": responses}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    n = len(prompts) * cfg.num_responses
    print(f"generated {n} responses for {len(prompts)} prompts in {elapsed:.1f} s -> {out}", file=sys.stderr)
    return out


def main(argv: list[str], command: str = "generate") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.validate import DataError
    from prefloop.models.load import ModelLoadError

    cfg = parse_args(GenerateConfig, argv, prog=f"prefloop {command}", description=GenerateConfig.__doc__)
    try:
        run(cfg)
    except (DataError, ConfigError, FileNotFoundError, ValueError, ModelLoadError) as exc:
        fail(str(exc))
