"""Built-in tasks: prompt lists shipped with the package (used by `prefloop demo`).

`positive_replies` — 90 short chat prompts (replies to a friend's good or bad news, one
sentence about everyday things that are often grumbled about, short notes). The gold
preference is a warm, positive reply (`prefloop.rewards.gold.SentimentGold`); the prompts
were picked so that SmolLM2-135M-Instruct's samples vary in sentiment, which gives the
simulated annotator's preferences a signal to learn from.
"""

from __future__ import annotations

import json
import random
from importlib import resources

TASKS = {"positive_replies": "positive_replies.jsonl"}


def task_prompts(name: str = "positive_replies") -> list[str]:
    """The prompts of a built-in task, in file order."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    text = resources.files(__package__).joinpath(TASKS[name]).read_text(encoding="utf-8")
    prompts = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise ValueError(f"{TASKS[name]}:{line_no}: field 'prompt': expected a non-empty string")
            prompts.append(row["prompt"])
    return prompts


def split_prompts(
    prompts: list[str], num_train: int, num_eval: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """A seeded, disjoint (train, held-out) split: shuffle once, held-out first, then train.

    The held-out set depends only on the seed and `num_eval`, so runs with different
    training sizes are evaluated on the same prompts.
    """
    if num_train < 1 or num_eval < 1:
        raise ValueError("num_train and num_eval must be at least 1")
    if num_train + num_eval > len(prompts):
        raise ValueError(
            f"asked for {num_train} training + {num_eval} held-out prompts, but the task has {len(prompts)}"
        )
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    held_out = [prompts[i] for i in order[:num_eval]]
    train = [prompts[i] for i in order[num_eval : num_eval + num_train]]
    return train, held_out
