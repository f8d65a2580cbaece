"""Rewards: everything behind the `RewardFn` protocol, and what is done to scores before RL.

- `base`: the protocol, `call_reward` (checked call: one finite float per completion, errors
  naming the reward and the batch), `RewardError`.
- `spec.load_reward(SPEC)`: the `--reward` parser (reward-model directories, gold judges,
  Python callables, weighted sums, YAML files with ensembles and Llama 2 safety gating).
- `combine`: `WeightedSum`, `EnsembleReward` (mean / lcb / ucb), `SafetyGatedReward`.
- `shaping`: `RewardShaping` (missing-EOS and length penalties, running normalisation,
  clipping) applied by a `RewardShaper` that keeps resumable running statistics.
- `model.RewardModelScorer` (a trained reward model) and `gold.SentimentGold` (the demo's gold).

Importing this package does not import torch (`model` does, when used).
"""

from prefloop.rewards.base import RewardError, RewardFn, call_reward, reward_name
from prefloop.rewards.combine import (
    ENSEMBLE_COMBINES,
    LLAMA2_SAFETY_THRESHOLD,
    EnsembleReward,
    NamedReward,
    SafetyGatedReward,
    WeightedSum,
)
from prefloop.rewards.shaping import RewardShaper, RewardShaping, RunningMoments
from prefloop.rewards.spec import ACCEPTED_FORMS, RewardSpecError, load_reward, reward_model_dir

__all__ = [
    "ACCEPTED_FORMS",
    "ENSEMBLE_COMBINES",
    "LLAMA2_SAFETY_THRESHOLD",
    "EnsembleReward",
    "NamedReward",
    "RewardError",
    "RewardFn",
    "RewardShaper",
    "RewardShaping",
    "RewardSpecError",
    "RunningMoments",
    "SafetyGatedReward",
    "WeightedSum",
    "call_reward",
    "load_reward",
    "reward_model_dir",
    "reward_name",
]
