"""Pure loss functions over tensors; each returns ``(loss: scalar tensor, metrics: dict[str, float])``.

No models, no trainers: log-probs, rewards and masks in, a loss and detached metrics out.
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
    "KL_ESTIMATORS",
    "PREFERENCE_LOSSES",
    "RANKING_KINDS",
    "bradley_terry_loss",
    "dpo_loss",
    "ipo_loss",
    "kl_estimate",
    "kto_loss",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "pairwise_logistic_nll",
    "plackett_luce_dpo_loss",
    "plackett_luce_nll",
    "ranking_loss",
    "sequence_logps",
    "token_logps",
    "whiten",
]
