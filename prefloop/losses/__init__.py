"""Pure loss functions over tensors; each returns ``(loss: scalar tensor, metrics: dict[str, float])``.

No models, no trainers: log-probs, rewards and masks in, a loss and detached metrics out.
The online RL pieces (advantages, PPO's clipped losses, KL control and shaping, entropy, PPO-ptx)
are in ``prefloop.losses.rl``; advantage functions return tensors, not (loss, metrics).
``PREFERENCE_LOSSES`` maps the offline preference loop's ``loss`` config value to its data-shape
family and function; the loop calls a function by its family's signature, never by its name.
"""

from collections.abc import Callable

import torch

from prefloop.losses.common import (
    KL_ESTIMATORS,
    kl_estimate,
    masked_mean,
    masked_sum,
    masked_var,
    pairwise_logistic_nll,
    plackett_luce_nll,
    sequence_logps,
    token_logps,
    whiten,
)
from prefloop.losses.diffusion import diffusion_dpo_loss
from prefloop.losses.preference import dpo_loss, ipo_loss, kto_loss, plackett_luce_dpo_loss
from prefloop.losses.reward import RANKING_KINDS, bradley_terry_loss, ranking_loss
from prefloop.losses.rl import (
    AGGREGATION_OF_METHOD,
    AGGREGATIONS,
    GROUP_ADVANTAGE_KINDS,
    SHAPING_KL_KINDS,
    AdaptiveKLController,
    FixedKLController,
    aggregate_loss,
    discounted_returns,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_loss,
    kl_penalized_rewards,
    logprob_mismatch,
    ppo_policy_loss,
    ptx_loss,
    reinforce_plus_plus_advantages,
    truncated_importance_weights,
    value_loss,
)
from prefloop.losses.segment import segment_preference_loss

# Families of preference losses, by the data they consume (the loop's only branch):
# - "pairwise": fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=..., **options)
# - "listwise": fn(policy_logps[B,K], ref_logps[B,K], mask[B,K], beta=..., ranks=...)
# - "unpaired": fn(policy_logps, ref_logps, desirable, kl_baseline, beta=..., **options)
# Options are the function's other keyword parameters, read from the config fields of the same
# name. A new pairwise loss is one function here and one line below (plus its name in the
# config's `loss` choices).
PREFERENCE_FAMILIES = ("pairwise", "listwise", "unpaired")
PREFERENCE_LOSSES: dict[str, tuple[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]]] = {
    "dpo": ("pairwise", dpo_loss),
    "ipo": ("pairwise", ipo_loss),
    "kto": ("unpaired", kto_loss),
    "pl_dpo": ("listwise", plackett_luce_dpo_loss),
}

__all__ = [
    "AGGREGATIONS",
    "AGGREGATION_OF_METHOD",
    "GROUP_ADVANTAGE_KINDS",
    "KL_ESTIMATORS",
    "PREFERENCE_FAMILIES",
    "PREFERENCE_LOSSES",
    "RANKING_KINDS",
    "SHAPING_KL_KINDS",
    "AdaptiveKLController",
    "FixedKLController",
    "aggregate_loss",
    "bradley_terry_loss",
    "diffusion_dpo_loss",
    "discounted_returns",
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "ipo_loss",
    "kl_estimate",
    "kl_loss",
    "kl_penalized_rewards",
    "kto_loss",
    "logprob_mismatch",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "pairwise_logistic_nll",
    "plackett_luce_dpo_loss",
    "plackett_luce_nll",
    "ppo_policy_loss",
    "ptx_loss",
    "ranking_loss",
    "reinforce_plus_plus_advantages",
    "segment_preference_loss",
    "sequence_logps",
    "token_logps",
    "truncated_importance_weights",
    "value_loss",
    "whiten",
]
