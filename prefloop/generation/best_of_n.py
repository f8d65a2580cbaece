"""`prefloop best-of-n`: sample N completions per prompt, keep the one the reward scores highest.

Provenance: Stiennon et al. 2020 and Nakano et al. 2021 (WebGPT) use best-of-N as an
inference-time baseline for RL; Gao et al. 2023 ("Scaling Laws for Reward Model
Overoptimization") measure it against its KL to the sampling policy, which is at most

    KL(π_best-of-N ‖ π) = log N − (N − 1) / N        (Hilton's bound, stated in Gao et al. §2)

Output (OUTPUT/):
    best_of_n.jsonl   one line per prompt: prompt, response (the best), reward, and all N
                      responses with their rewards
    summary.json      mean reward of the best-of-N choice vs the mean over all N samples
                      (what sampling one completion gets on average), the gain, and the KL bound

Ties go to the earliest sample. `--max-steps` is accepted for the shared flag set and limits the
number of prompts (-1: all); `--lora` has no effect (nothing is trained).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass
class BestOfNConfig:
    """Best-of-N sampling: N completions per prompt, the highest-reward one kept (no training)."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Model to sample from: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a local path or a hub id."""
    data: str = ""
    """Prompts: any of our formats with a 'prompt' field (TRL's prompt-only format too)."""
    reward: str = ""
    """The reward: rm:DIR, a reward-model directory, gold:NAME, MODULE:FUNCTION, W*SPEC,... or FILE.yaml."""
    output_dir: str = "outputs/best-of-n"
    """Where best_of_n.jsonl and summary.json are written."""
    n: int = 4
    """Completions sampled per prompt (N)."""
    max_steps: int = -1
    """Number of prompts to answer (-1: all)."""
    max_new_tokens: int = 48
    """Maximum tokens per completion."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1 = off)."""
    max_prompt_length: int = 256
    """Maximum prompt tokens (the prompt's end is kept)."""
    gen_batch_size: int = 64
    """Sequences per generate() call."""
    reward_batch_size: int = 16
    """Completions per reward-model forward pass."""
    seed: int = 0
    """Sampling seed: the same seed, model and prompts give the same output."""
    lora: bool = False
    """Accepted for the shared flag set; best-of-N trains nothing."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Model weights' dtype (float32 on CPU)."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', ..."""


def kl_bound(n: int) -> float:
    """log N − (N − 1)/N: the KL of best-of-N to the sampling policy is at most this (nats)."""
    return math.log(n) - (n - 1) / n


def select_best(scores: list[list[float]]) -> list[int]:
    """Index of the highest score in each group (the earliest on ties)."""
    return [max(range(len(g)), key=lambda i: (g[i], -i)) for g in scores]


def best_of_n(
    generator, reward, prompts, n: int, batch: Any = None
) -> tuple[list, list[list[float]], list[int]]:
    """(completions grouped per prompt, their rewards, the chosen index per prompt) for Prompt records."""
    from prefloop.generation.base import group_by_prompt
    from prefloop.rewards import call_reward

    completions = generator.generate([p.prompt for p in prompts], n)
    flat_prompts = [prompts[c.prompt_index] for c in completions]
    scores = call_reward(
        reward,
        [p.prompt for p in flat_prompts],
        [c.text for c in completions],
        meta=[p.meta for p in flat_prompts],
        batch=batch,
    )
    groups = group_by_prompt(completions, len(prompts))
    grouped_scores = [scores[i * n : (i + 1) * n] for i in range(len(prompts))]
    return groups, grouped_scores, select_best(grouped_scores)


def run(cfg: BestOfNConfig) -> Path:
    """Sample, score, select and write OUTPUT/best_of_n.jsonl and summary.json; returns the JSONL path."""
    from prefloop.data.io import read_records
    from prefloop.generation.hf import load_generator
    from prefloop.rewards import load_reward

    if not cfg.data:
        raise FileNotFoundError("no prompts: pass --data prompts.jsonl")
    if cfg.n < 1:
        from prefloop.config import ConfigError

        raise ConfigError(f"n must be >= 1, got {cfg.n}")
    if not cfg.reward:
        from prefloop.config import ConfigError

        raise ConfigError("no reward: pass --reward SPEC")
    prompts = read_records(cfg.data, kind="prompt")
    if cfg.max_steps > 0:
        prompts = prompts[: cfg.max_steps]
    reward = load_reward(cfg.reward, device=cfg.device, batch_size=cfg.reward_batch_size)
    generator = load_generator(
        cfg.model,
        cfg.dtype,
        cfg.device,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.gen_batch_size,
        max_prompt_length=cfg.max_prompt_length,
        seed=cfg.seed,
    )
    groups, scores, best = best_of_n(generator, reward, prompts, cfg.n)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "best_of_n.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for p, cs, ss, b in zip(prompts, groups, scores, best):
            row = {
                "prompt": p.prompt,
                "response": cs[b].text,
                "reward": ss[b],
                "samples": [{"text": c.text, "reward": s} for c, s in zip(cs, ss)],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    best_mean = sum(ss[b] for ss, b in zip(scores, best)) / len(best)
    all_mean = sum(sum(ss) for ss in scores) / (len(scores) * cfg.n)
    summary = {
        "n": cfg.n,
        "num_prompts": len(prompts),
        "reward_best_of_n": best_mean,
        "reward_mean_of_n": all_mean,
        "gain": best_mean - all_mean,
        "kl_bound_nats": kl_bound(cfg.n),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"best-of-{cfg.n} reward {best_mean:.4f} vs {all_mean:.4f} for one sample "
        f"(+{best_mean - all_mean:.4f}; KL <= {kl_bound(cfg.n):.3f} nats)",
        file=sys.stderr,
    )
    return path


def main(argv: list[str], command: str = "best-of-n") -> None:
    from prefloop.cli import fail
    from prefloop.config import ConfigError, parse_args
    from prefloop.data.io import DataError
    from prefloop.models.load import ModelLoadError
    from prefloop.rewards import RewardError

    cfg = parse_args(BestOfNConfig, argv, prog=f"prefloop {command}", description=BestOfNConfig.__doc__)
    try:
        out = run(cfg)
    except (DataError, ConfigError, ModelLoadError, RewardError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f"done: {out}")
