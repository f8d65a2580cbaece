"""`prefloop <command> [flags]`: one entry point; each command lives in its own module.

Commands are imported lazily so `prefloop --help` and the feedback server never load torch.
Each command module exposes `main(argv: list[str]) -> None`, which parses its typed config
with `prefloop.config.parse_args`.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

COMMANDS: dict[str, tuple[str, str]] = {
    "sft": ("prefloop.train.sft", "supervised fine-tuning on demonstrations (loss on response tokens)"),
    "reward": (
        "prefloop.train.reward_model",
        "train a scalar reward model on pairwise / ranked / margin data",
    ),
    "dpo": ("prefloop.train.preference", "direct preference optimization (sigmoid DPO, cDPO)"),
    "ipo": ("prefloop.train.preference", "identity preference optimization"),
    "kto": ("prefloop.train.preference", "Kahneman-Tversky optimization on binary feedback"),
    "ppo": (
        "prefloop.train.online",
        "PPO against a reward: value model, GAE, KL penalty, clipped surrogate, PPO-ptx",
    ),
    "a2c": (
        "prefloop.train.online",
        "advantage actor-critic against a reward (value-model baseline, one step per rollout)",
    ),
    "rloo": (
        "prefloop.train.online",
        "REINFORCE leave-one-out: K samples per prompt, leave-one-out baseline",
    ),
    "grpo": ("prefloop.train.online", "group relative policy optimization (grpo, dr_grpo, dapo losses)"),
    "reinforce": (
        "prefloop.train.online",
        "REINFORCE++: KL-shaped returns, global-batch-normalised advantages",
    ),
    "best-of-n": (
        "prefloop.generation.best_of_n",
        "sample N per prompt, keep the best by reward (inference)",
    ),
    "rejection-sampling": (
        "prefloop.train.rejection_sampling",
        "Llama 2 rejection sampling: best of N by reward, SFT on it, repeat --rounds",
    ),
    "eval": (
        "prefloop.eval.cli",
        "win rates, reward-KL frontier, over-optimization, leaderboards, run reports",
    ),
    "demo": ("prefloop.demo", "the main job: sample, simulate annotators, train RM + DPO, report"),
    "generate": ("prefloop.generation.cli", "sample K responses per prompt from a model into JSONL"),
    "serve": ("prefloop.feedback.cli", "run the feedback server (web UI + REST API)"),
    "campaign": ("prefloop.feedback.cli", "create campaigns, annotators and exports from the shell"),
    "label": ("prefloop.label", "label a feedback campaign with an AI judge or a simulated annotator"),
    "judge-report": (
        "prefloop.judge_report",
        "measure an AI judge: agreement with gold and simulated annotators",
    ),
    "constitutional": (
        "prefloop.constitutional",
        "constitutional AI: 'sl' (critique, revise, SFT) or 'rl' (AI labels, PM, DPO)",
    ),
    "online-dpo": (
        "prefloop.train.online_preference",
        "online DPO: the policy samples two replies, a teacher picks",
    ),
    "nash-md": (
        "prefloop.train.online_preference",
        "Nash-MD: play against a policy/reference mixture, judged by a teacher",
    ),
    "diffusion-dpo": (
        "prefloop.train.diffusion_dpo",
        "Diffusion-DPO: align a tiny image DDPM (8x8 digits) with simulated preferences",
    ),
    "control": (
        "prefloop.control.loop",
        "preference-based RL on gymnasium tasks: segments, simulated teachers, reward ensemble, PPO",
    ),
    "serve-judge": (
        "prefloop.teachers.serve",
        "serve a causal LM as an OpenAI-compatible chat endpoint (AI judges)",
    ),
}


def fail(message: str) -> NoReturn:
    """Stop a command with a one-line error on stderr and exit code 2 (bad input, not a bug)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: prefloop <command> [--help] [flags]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"prefloop: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[command][0])
    module.main(rest, command=command)


if __name__ == "__main__":
    main()
