"""`prefloop rejection-sampling`: Llama 2's rejection-sampling fine-tuning, iterated.

Provenance: Touvron et al. 2023 (Llama 2), §3.2.3 "Rejection Sampling": sample K outputs per
prompt from the current model, score them with the reward model, keep the best, and fine-tune
on the selected (prompt, output) pairs with the supervised objective; repeat.

Each round r = 1..rounds:

    1. sample     N = `num_samples` completions per prompt from the current model (seeded per round)
    2. select     the highest-reward one per prompt (`prefloop.generation.best_of_n`); with
                  `min_reward` set, prompts whose best is below it are dropped
    3. fine-tune  the SFT loop (`prefloop.train.sft.train`) on the selected pairs, starting
                  from the current model, into OUTPUT/round-r; its final/ is the next model

OUTPUT/round-r/selected.jsonl holds each round's selection (prompt, response, reward, all
rewards); OUTPUT/final is a copy of the last round's final/; OUTPUT/rounds.json has per-round
mean reward of the selection and of all samples. `--max-steps` is the SFT steps per round.

Choices: each round fine-tunes the previous round's model on that round's selection only
(Llama 2 also pooled the best samples of earlier rounds; pass earlier selected.jsonl files
through --data of a later run to do that). With `--resume`, finished rounds (round-r/final
exists) are reused and an unfinished one is redone from its start.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from prefloop.train.config import TrainError
from prefloop.train.sft import SFTConfig


@dataclass
class RejectionSamplingConfig(SFTConfig):
    """Llama 2 rejection sampling: sample N per prompt, keep the best by reward, SFT on it; repeat."""

    output_dir: str = "outputs/rejection-sampling"
    """Where round-*/, final/ and rounds.json are written."""
    data: str = ""
    """Prompts: any of our formats with a 'prompt' field (TRL's prompt-only format too)."""
    reward: str = ""
    """The reward: rm:DIR, a reward-model directory, gold:NAME, MODULE:FUNCTION, W*SPEC,... or FILE.yaml."""
    reward_batch_size: int = 16
    """Completions per reward-model forward pass."""
    rounds: int = 1
    """Sample-select-fine-tune iterations."""
    num_samples: int = 4
    """Completions sampled per prompt in each round (N)."""
    min_reward: float | None = None
    """Drop prompts whose best completion scores below this (None: keep all)."""
    max_new_tokens: int = 48
    """Maximum tokens per sampled completion."""
    temperature: float = 1.0
    """Sampling temperature (Llama 2 raised it in later rounds; one value here)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1 = off)."""
    gen_batch_size: int = 64
    """Sequences per generate() call."""


def train(cfg: RejectionSamplingConfig, records=None, reward=None) -> Path:
    """Run `rounds` rounds; returns OUTPUT/final."""
    from prefloop.data.io import read_records
    from prefloop.data.records import Demonstration
    from prefloop.generation.best_of_n import best_of_n
    from prefloop.generation.hf import load_generator
    from prefloop.rewards import load_reward
    from prefloop.train import sft

    if cfg.rounds < 1 or cfg.num_samples < 1:
        raise TrainError("rounds and num_samples must be >= 1")
    if records is None:
        if not cfg.data:
            raise FileNotFoundError("no prompts: pass --data prompts.jsonl")
        records = read_records(cfg.data, kind="prompt")
    if reward is None:
        if not cfg.reward:
            raise TrainError("no reward: pass --reward SPEC")
        reward = load_reward(cfg.reward, device=cfg.device, batch_size=cfg.reward_batch_size)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from prefloop.config import save_yaml

    save_yaml(cfg, out / "config.yaml")
    current, history = cfg.model, []
    for r in range(1, cfg.rounds + 1):
        round_dir = out / f"round-{r}"
        if (
            cfg.resume
            and (round_dir / "final" / "config.json").is_file()
            and (round_dir / "selected.jsonl").is_file()
        ):
            rows = [
                json.loads(line) for line in (round_dir / "selected.jsonl").read_text().splitlines() if line
            ]
            history.append(
                {
                    "round": r,
                    "selected": len(rows),
                    "reward_selected": sum(row["reward"] for row in rows) / len(rows),
                    "reward_all": sum(sum(row["rewards"]) for row in rows)
                    / sum(len(row["rewards"]) for row in rows),
                }
            )
            current = str(round_dir / "final")
            continue
        print(
            f"[round {r}/{cfg.rounds}] sample {cfg.num_samples} x {len(records)} prompts from {current}",
            file=sys.stderr,
        )
        generator = load_generator(
            current,
            cfg.dtype,
            cfg.device,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.gen_batch_size,
            max_prompt_length=cfg.max_prompt_length,
            seed=cfg.seed * 1000 + r,
        )
        groups, scores, best = best_of_n(generator, reward, records, cfg.num_samples, batch=f"round {r}")
        del generator
        kept = [
            (p, cs[b], ss[b], ss)
            for p, cs, ss, b in zip(records, groups, scores, best)
            if cfg.min_reward is None or ss[b] >= cfg.min_reward
        ]
        if not kept:
            raise TrainError(f"round {r}: no completion reached min_reward {cfg.min_reward}")
        round_dir.mkdir(parents=True, exist_ok=True)
        with (round_dir / "selected.jsonl").open("w", encoding="utf-8") as f:
            for p, c, s, ss in kept:
                f.write(
                    json.dumps({"prompt": p.prompt, "response": c.text, "reward": s, "rewards": ss}) + "\n"
                )
        history.append(
            {
                "round": r,
                "selected": len(kept),
                "reward_selected": sum(s for _, _, s, _ in kept) / len(kept),
                "reward_all": sum(sum(ss) for ss in scores) / (len(scores) * cfg.num_samples),
            }
        )
        print(
            f"[round {r}/{cfg.rounds}] kept {len(kept)}; reward of the kept {history[-1]['reward_selected']:.4f} "
            f"vs all samples {history[-1]['reward_all']:.4f}; fine-tuning",
            file=sys.stderr,
        )
        demos = [Demonstration(p.prompt, c.text) for p, c, _, _ in kept]
        sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
        round_cfg = SFTConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in sft_fields})
        round_cfg = dataclasses.replace(
            round_cfg,
            model=str(current),
            output_dir=str(round_dir),
            data="",
            seed=cfg.seed + r,
            resume=False,
            resume_from=None,
        )
        current = str(sft.train(round_cfg, records=demos))
    (out / "rounds.json").write_text(json.dumps(history, indent=2) + "\n")
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(current, final)
    return final


def main(argv: list[str], command: str = "rejection-sampling") -> None:
    from prefloop.rewards import RewardError
    from prefloop.train.config import run_cli

    def run(cfg: RejectionSamplingConfig) -> Path:
        try:
            return train(cfg)
        except RewardError as exc:
            raise TrainError(str(exc)) from None

    run_cli(RejectionSamplingConfig, argv, command, run)
