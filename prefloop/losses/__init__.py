"""Pure loss functions over tensors; each returns ``(loss: scalar tensor, metrics: dict[str, float])``.

No models, no trainers: log-probs, rewards and masks in, a loss and detached metrics out.
The online RL pieces (advantages, PPO's clipped losses, KL control and shaping, entropy, PPO-ptx)
are in ``prefloop.losses.rl``; advantage functions return tensors, not (loss, metrics).
``PREFERENCE_LOSSES`` maps the offline preference loop's ``loss`` config value to its function.
"""

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
    ppo_policy_loss,
    ptx_loss,
    reinforce_plus_plus_advantages,
    value_loss,
)

# Signatures differ by data shape: dpo/ipo take (policy_chosen, policy_rejected, ref_chosen,
# ref_rejected, beta=...); pl_dpo takes (policy_logps[B,K], ref_logps[B,K], mask[B,K], beta=...);
# kto takes (policy_logps, ref_logps, desirable, kl_baseline, beta=...).
PREFERENCE_LOSSES = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "kto": kto_loss,
    "pl_dpo": plackett_luce_dpo_loss,
}

__all__ = [
    "AGGREGATIONS",
    "AGGREGATION_OF_METHOD",
    "GROUP_ADVANTAGE_KINDS",
    "KL_ESTIMATORS",
    "PREFERENCE_LOSSES",
    "RANKING_KINDS",
    "SHAPING_KL_KINDS",
    "AdaptiveKLController",
    "FixedKLController",
    "aggregate_loss",
    "bradley_terry_loss",
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
    "sequence_logps",
    "token_logps",
    "value_loss",
    "whiten",
]
