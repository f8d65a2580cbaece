"""Each online algorithm must actually learn: on a tiny policy that answers "Yes, gladly." or
"No." (about a third "Yes" after a short SFT), with reward 1 for a reply starting with "Yes",
the mean reward of the last steps must clearly exceed that of the first steps.

Marked slow (about 30 CPU seconds per algorithm on 2 shared cores; CI runs the slow tier).
This can fail: a sign error in an advantage, a ratio taken the wrong way round, a loss that
ignores the advantage or a broken group baseline each leave the reward flat or push it down.
"""

import json
from pathlib import Path

import pytest

from prefloop.data.records import Demonstration, Prompt
from prefloop.train import online, sft
from prefloop.train.logs import read_metrics

REPO = Path(__file__).resolve().parents[2]


def starts_yes(prompts, completions):
    return [1.0 if c.startswith("Yes") else 0.0 for c in completions]


def _prompts() -> list[str]:
    rows = [
        json.loads(line)["prompt"] for line in (REPO / "examples/data/prompts.jsonl").read_text().splitlines()
    ]
    return [p if isinstance(p, str) else p[0]["content"] for p in rows]


@pytest.fixture(scope="module")
def bimodal_policy(tmp_path_factory) -> str:
    demos = [Demonstration(p, reply) for p in _prompts() for reply in ("Yes, gladly.", "No.")]
    cfg = sft.SFTConfig(
        model="tiny",
        output_dir=str(tmp_path_factory.mktemp("bimodal")),
        max_steps=30,
        batch_size=8,
        learning_rate=3e-3,
        lr_scheduler="constant",
        save_steps=0,
        report_to_tensorboard="no",
    )
    return str(sft.train(cfg, records=demos))


SETTINGS = {  # small budgets; each still has room to fail
    "ppo": dict(ppo_epochs=2, batch_size=8),
    "a2c": dict(batch_size=32),
    "rloo": dict(batch_size=32),
    "grpo": dict(batch_size=32),
    "reinforce": dict(batch_size=32),
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(SETTINGS))
def test_algorithm_raises_the_reward(algorithm, bimodal_policy, tmp_path):
    cfg = online.CONFIGS[algorithm](
        model=bimodal_policy,
        output_dir=str(tmp_path / algorithm),
        reward="starts_yes",
        max_steps=10,
        learning_rate=3e-3,
        prompts_per_step=8,
        num_generations=4,
        max_new_tokens=3,
        save_steps=0,
        report_to_tensorboard="no",
        **SETTINGS[algorithm],
    )
    online.train(cfg, records=[Prompt(p) for p in _prompts()], reward=starts_yes, algorithm=algorithm)
    scores = [row["score/mean"] for row in read_metrics(cfg.output_dir)]
    first, last = sum(scores[:2]) / 2, sum(scores[-2:]) / 2
    assert first < 0.6, scores  # the start policy says "Yes" only sometimes
    assert last >= first + 0.3, scores
