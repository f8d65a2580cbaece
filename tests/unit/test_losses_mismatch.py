"""The generator/trainer mismatch guard: KL of the sampled tokens and truncated importance weights,
with the expected numbers derived by hand in the comments."""

import math

import pytest
import torch

from prefloop.losses import logprob_mismatch, truncated_importance_weights

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def cases():
    # Δ = trainer − sampler:  row 0: [ln 3, −ln 2]  (ratios 3 and 1/2)
    #                         row 1: [ln 4, ln 4, padding]  (ratios 4, 4)
    trainer = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, 50.0]], dtype=torch.float64)
    sampler = torch.tensor(
        [[-1.0 - LN3, -2.0 + LN2, 0.0], [-1.0 - LN4, -1.0 - LN4, 0.0]], dtype=torch.float64
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    return trainer, sampler, mask


def test_truncated_importance_weights_by_hand():
    trainer, sampler, mask = cases()
    w, m = truncated_importance_weights(trainer, sampler, mask, cap=2.0)
    # min(ratio, 2): row 0 [2, 0.5], row 1 [2, 2]; padding 0
    assert w.flatten().tolist() == pytest.approx([2.0, 0.5, 0.0, 2.0, 2.0, 0.0])
    assert m["is/ratio_mean"] == pytest.approx((3 + 0.5 + 4 + 4) / 4)  # 2.875, before the cap
    assert m["is/capped_frac"] == pytest.approx(3 / 4)  # 3, 4, 4 reach the cap
    assert m["is/masked_seq_frac"] == 0.0
    assert not w.requires_grad


def test_sequence_mask_drops_whole_sequences_by_hand():
    trainer, sampler, mask = cases()
    w, m = truncated_importance_weights(trainer, sampler, mask, cap=2.0, seq_threshold=3.0)
    # mean log-ratio: row 0 (ln 3 − ln 2)/2 = 0.203 <= ln 3 -> kept; row 1 ln 4 > ln 3 -> masked
    assert w.flatten().tolist() == pytest.approx([2.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    assert m["is/masked_seq_frac"] == 0.5


def test_equal_engines_give_weight_one():
    lp = torch.tensor([[-0.3, -1.2]])
    w, m = truncated_importance_weights(lp, lp.clone(), torch.ones(1, 2), cap=2.0, seq_threshold=1.5)
    assert w.tolist() == [[1.0, 1.0]]
    assert m["is/capped_frac"] == 0.0


def test_mismatch_kl_by_hand():
    trainer, sampler, mask = cases()
    m = logprob_mismatch(sampler, trainer, mask)
    # k3 = e^Δ − 1 − Δ per real token: 3 − 1 − ln 3, 1/2 − 1 + ln 2, and 4 − 1 − ln 4 twice
    k3 = [2 - LN3, -0.5 + LN2, 3 - LN4, 3 - LN4]
    assert m["logprobs/mismatch_kl"] == pytest.approx(sum(k3) / 4)
    assert m["logprobs/mismatch_max"] == pytest.approx(LN4)  # the padding's 50 is ignored


def test_bad_options_are_errors():
    trainer, sampler, mask = cases()
    with pytest.raises(ValueError, match="cap"):
        truncated_importance_weights(trainer, sampler, mask, cap=0.0)
    with pytest.raises(ValueError, match="seq_threshold"):
        truncated_importance_weights(trainer, sampler, mask, seq_threshold=1.0)
