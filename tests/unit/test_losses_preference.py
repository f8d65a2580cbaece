"""DPO / cDPO / IPO / Plackett–Luce DPO / KTO with numbers derived by hand."""

import math

import pytest
import torch

from prefloop.losses import (
    PREFERENCE_LOSSES,
    dpo_loss,
    ipo_loss,
    kto_loss,
    plackett_luce_dpo_loss,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


# One pair used throughout: policy chosen −10 vs ref −11 (log-ratio +1), policy rejected −12 vs
# ref −11 (log-ratio −1), so h = 1 − (−1) = 2.
PAIR = dict(policy_chosen=-10.0, policy_rejected=-12.0, ref_chosen=-11.0, ref_rejected=-11.0)


def pair_tensors(grad: bool = False):
    return (
        t(PAIR["policy_chosen"], grad=grad),
        t(PAIR["policy_rejected"], grad=grad),
        t(PAIR["ref_chosen"]),
        t(PAIR["ref_rejected"]),
    )


# --------------------------------------------------------------------------- DPO


def test_dpo_by_hand():
    loss, metrics = dpo_loss(*pair_tensors(), beta=0.1)
    # β = 0.1, h = 2 → loss = −log σ(0.2) = log(1 + e^−0.2) = 0.59814…
    expected = math.log(1 + math.exp(-0.2))
    assert expected == pytest.approx(0.598139, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    assert metrics["rewards/chosen"] == pytest.approx(0.1)  # β · (+1)
    assert metrics["rewards/rejected"] == pytest.approx(-0.1)  # β · (−1)
    assert metrics["rewards/margin"] == pytest.approx(0.2)
    assert metrics["rewards/accuracy"] == 1.0
    assert metrics["logps/chosen"] == pytest.approx(-10.0)
    assert all(isinstance(v, float) for v in metrics.values())


def test_dpo_policy_equal_to_reference_is_ln2():
    x = t(-5.0, -7.0)
    y = t(-6.0, -3.0)
    loss, metrics = dpo_loss(x, y, x.clone(), y.clone(), beta=0.5)
    assert loss.item() == pytest.approx(math.log(2))  # h = 0 → −log σ(0)
    assert metrics["rewards/accuracy"] == 0.0  # equal rewards are not "correct"


def test_dpo_batch_mean_by_hand():
    # pair 1: h = 2 (as above); pair 2: chosen ratio −1, rejected ratio +2 → h = −3. β = 0.5
    pc = t(-10.0, -5.0)
    pr = t(-12.0, -4.0)
    rc = t(-11.0, -4.0)
    rr = t(-11.0, -6.0)
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # log(1 + e^−1) = 0.313262 and log(1 + e^1.5) = 1.701413; mean = 1.007338
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.5))) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["rewards/accuracy"] == 0.5
    assert metrics["rewards/margin"] == pytest.approx((0.5 * 2 + 0.5 * -3) / 2)


def test_dpo_label_smoothing_by_hand():
    loss, _ = dpo_loss(*pair_tensors(), beta=0.1, label_smoothing=0.1)
    # −0.9 log σ(0.2) − 0.1 log σ(−0.2) = 0.9·log(1+e^−0.2) + 0.1·log(1+e^0.2)
    #   = 0.9·0.598139 + 0.1·0.798139 = 0.618139
    expected = 0.9 * math.log(1 + math.exp(-0.2)) + 0.1 * math.log(1 + math.exp(0.2))
    assert expected == pytest.approx(0.618139, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    # ε = 0.5: symmetric, so the gradient w.r.t. h vanishes at h = 0 and pulls h back toward 0
    pc, pr, rc, rr = pair_tensors(grad=True)
    half, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.5)
    half.backward()
    # d/dπc = 0.5β(σ(βh) − σ(−βh)) = 0.05·(σ(0.2) − σ(−0.2)) > 0
    assert pc.grad.item() == pytest.approx(0.05 * (sigmoid(0.2) - sigmoid(-0.2)))
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*pair_tensors(), label_smoothing=0.7)


def test_dpo_gradient_sign_and_value():
    pc, pr, rc, rr = pair_tensors(grad=True)
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss.backward()
    # d/dπc [−log σ(βh)] = −β σ(−βh) = −0.1 · σ(−0.2) = −0.1 · 0.450166 = −0.0450166
    assert pc.grad.item() < 0
    assert pc.grad.item() == pytest.approx(-0.1 * sigmoid(-0.2))
    assert pr.grad.item() == pytest.approx(+0.1 * sigmoid(-0.2))


def test_dpo_shape_and_beta_errors():
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        dpo_loss(t(1.0, 2.0), t(1.0, 2.0), t(1.0, 2.0), t(1.0))
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*pair_tensors(), beta=0.0)


# --------------------------------------------------------------------------- IPO


def test_ipo_by_hand_and_gradient_sign():
    pc, pr, rc, rr = pair_tensors(grad=True)
    loss, metrics = ipo_loss(pc, pr, rc, rr, beta=0.1)
    # 1/(2β) = 5; h = 2 → (2 − 5)² = 9
    assert loss.item() == pytest.approx(9.0)
    assert metrics["rewards/margin"] == pytest.approx(0.2)
    loss.backward()
    # d/dπc (h − 5)² = 2(h − 5) = −6 < 0: widen the gap while h < 1/(2β)
    assert pc.grad.item() == pytest.approx(-6.0)
    assert pr.grad.item() == pytest.approx(6.0)


def test_ipo_pulls_back_when_gap_overshoots():
    # h = 7 > 1/(2β) = 5: loss (7 − 5)² = 4 and the gradient now narrows the gap (the regulariser)
    pc = t(-4.0, grad=True)  # chosen ratio −4 − (−11) = 7
    loss, _ = ipo_loss(pc, t(-11.0), t(-11.0), t(-11.0), beta=0.1)
    assert loss.item() == pytest.approx(4.0)
    loss.backward()
    assert pc.grad.item() == pytest.approx(4.0)  # 2(h − 5) > 0


# --------------------------------------------------------------------------- Plackett–Luce DPO


def test_pl_dpo_k2_equals_dpo():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    dpo, dpo_metrics = dpo_loss(pc, pr, rc, rr, beta=0.3)
    pl, pl_metrics = plackett_luce_dpo_loss(
        torch.stack([pc, pr], 1), torch.stack([rc, rr], 1), torch.ones(5, 2), beta=0.3
    )
    assert pl.item() == pytest.approx(dpo.item(), rel=1e-12)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"):
        assert pl_metrics[key] == pytest.approx(dpo_metrics[key], rel=1e-12), key


def test_pl_dpo_k3_by_hand():
    # β = 0.5, log-ratios [2, 0, −2] → scores s = [1, 0, −1], order best → worst
    policy = t(-8.0, -10.0, -12.0).unsqueeze(0)
    ref = t(-10.0, -10.0, -10.0).unsqueeze(0)
    loss, metrics = plackett_luce_dpo_loss(policy, ref, torch.ones(1, 3), beta=0.5)
    # −[ (1 − log(e^1 + e^0 + e^−1)) + (0 − log(e^0 + e^−1)) + 0 ]
    expected = -((1 - math.log(math.e + 1 + math.exp(-1))) + (0 - math.log(1 + math.exp(-1))))
    assert loss.item() == pytest.approx(expected)
    assert metrics["rewards/chosen"] == pytest.approx(1.0)
    assert metrics["rewards/rejected"] == pytest.approx(-0.5)  # mean of 0 and −1
    assert metrics["rewards/accuracy"] == 1.0


def test_pl_dpo_mask_variable_k_and_gradient_sign():
    policy = t(-8.0, -10.0, -12.0, -9.0, -9.5, 123.0, grad=True)
    policy2d = policy.view(2, 3)
    ref = torch.full((2, 3), -10.0, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, _ = plackett_luce_dpo_loss(policy2d, ref, mask, beta=0.5)
    row0 = -((1 - math.log(math.e + 1 + math.exp(-1))) + (0 - math.log(1 + math.exp(-1))))
    # row 1: log-ratios 1 and 0.5 → h = 0.5, β h = 0.25: DPO −log σ(0.25); padding ignored
    row1 = math.log(1 + math.exp(-0.25))
    assert loss.item() == pytest.approx((row0 + row1) / 2)
    loss.backward()
    grad = policy.grad.view(2, 3)
    assert grad[0, 0] < 0 and grad[0, 2] > 0  # best pushed up, worst pushed down
    assert grad[1, 0] < 0 and grad[1, 1] > 0
    assert grad[1, 2] == 0  # padding


def test_pl_dpo_ties_breslow():
    policy = t(-8.0, -10.0, -12.0).unsqueeze(0)
    ref = t(-10.0, -10.0, -10.0).unsqueeze(0)
    ranks = torch.tensor([[0, 1, 1]])  # the two worse responses tie
    loss, _ = plackett_luce_dpo_loss(policy, ref, torch.ones(1, 3), beta=0.5, ranks=ranks)
    # s = [1, 0, −1]; the tied pair shares the denominator e^0 + e^−1
    expected = -(
        (1 - math.log(math.e + 1 + math.exp(-1)))
        + (0 - math.log(1 + math.exp(-1)))
        + (-1 - math.log(1 + math.exp(-1)))
    )
    assert loss.item() == pytest.approx(expected)


# --------------------------------------------------------------------------- KTO


def test_kto_by_hand():
    # β = 0.1, z0 = 0.5. Desirable: r = −7.5 − (−10) = 2.5; undesirable: r = −6.5 − (−10) = 3.5
    policy = t(-7.5, -6.5)
    ref = t(-10.0, -10.0)
    desirable = torch.tensor([True, False])
    loss, metrics = kto_loss(policy, ref, desirable, kl_baseline=0.5, beta=0.1)
    # desirable:   1 − σ(0.1·(2.5 − 0.5)) = 1 − σ(0.2) = 0.450166
    # undesirable: 1 − σ(0.1·(0.5 − 3.5)) = 1 − σ(−0.3) = 0.574443 ; mean = 0.512305
    expected = ((1 - sigmoid(0.2)) + (1 - sigmoid(-0.3))) / 2
    assert expected == pytest.approx(0.512305, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    assert metrics["kl_baseline"] == pytest.approx(0.5)
    assert metrics["rewards/desirable"] == pytest.approx(0.25)  # β · 2.5
    assert metrics["rewards/undesirable"] == pytest.approx(0.35)
    assert metrics["count/desirable"] == 1.0 and metrics["count/undesirable"] == 1.0


def test_kto_weights_by_hand():
    policy, ref = t(-7.5, -6.5), t(-10.0, -10.0)
    desirable = torch.tensor([True, False])
    loss, _ = kto_loss(policy, ref, desirable, 0.5, beta=0.1, desirable_weight=2.0, undesirable_weight=1.0)
    # λ_D = 2: 2 − 2σ(0.2) = 0.900332 ; λ_U = 1: 1 − σ(−0.3) = 0.574443 ; mean = 0.737388
    expected = ((2 - 2 * sigmoid(0.2)) + (1 - sigmoid(-0.3))) / 2
    assert loss.item() == pytest.approx(expected)


def test_kto_z0_clamped_and_not_differentiated():
    kl = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    policy = t(-7.5, grad=True)
    loss, metrics = kto_loss(policy, t(-10.0), torch.tensor([True]), kl, beta=0.1)
    # z0 = max(−3, 0) = 0 → 1 − σ(0.1 · 2.5) = 1 − σ(0.25)
    assert loss.item() == pytest.approx(1 - sigmoid(0.25))
    assert metrics["kl_baseline"] == 0.0
    loss.backward()
    assert kl.grad is None  # z0 is detached: no gradient flows into the KL estimate
    # positive baseline, also detached
    kl2 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    loss2, _ = kto_loss(t(-7.5, grad=True), t(-10.0), torch.tensor([True]), kl2, beta=0.1)
    loss2.backward()
    assert kl2.grad is None


def test_kto_gradient_sign():
    policy = t(-7.5, -6.5, grad=True)
    loss, _ = kto_loss(policy, t(-10.0, -10.0), torch.tensor([True, False]), 0.5, beta=0.1)
    loss.backward()
    # desirable: d/dr [1 − σ(β(r − z0))]/B = −β σ(0.2) σ(−0.2) / 2 < 0
    assert policy.grad[0].item() == pytest.approx(-0.1 * sigmoid(0.2) * sigmoid(-0.2) / 2)
    # undesirable: d/dr [1 − σ(β(z0 − r))]/B = +β σ(−0.3) σ(0.3) / 2 > 0
    assert policy.grad[1].item() == pytest.approx(0.1 * sigmoid(-0.3) * sigmoid(0.3) / 2)


def test_kto_single_group_metrics_and_dtype_error():
    _, metrics = kto_loss(t(-1.0), t(-1.0), torch.tensor([True]), 0.0)
    assert "rewards/undesirable" not in metrics and metrics["count/undesirable"] == 0.0
    with pytest.raises(ValueError, match="bool"):
        kto_loss(t(-1.0), t(-1.0), torch.tensor([1]), 0.0)


# --------------------------------------------------------------------------- registry


def test_registry_families_match_signatures():
    """Each registered loss is called by its family's signature; check each family on one example."""
    assert {family for family, _ in PREFERENCE_LOSSES.values()} == {"pairwise", "listwise", "unpaired"}
    pc, pr, rc, rr = t(-1.0), t(-2.0), t(-1.5), t(-1.5)
    for name, (family, fn) in PREFERENCE_LOSSES.items():
        if family == "pairwise":
            loss, _ = fn(pc, pr, rc, rr, beta=0.1)
        elif family == "listwise":
            loss, _ = fn(
                torch.stack([pc, pr], dim=1), torch.stack([rc, rr], dim=1), torch.ones(1, 2), beta=0.1
            )
        else:
            loss, _ = fn(pc, rc, torch.tensor([True]), 0.0, beta=0.1)
        assert torch.isfinite(loss), name
    # h = (−1 + 1.5) − (−2 + 1.5) = 1; DPO = −log σ(0.1) and PL-DPO with K = 2 is the same number.
    assert PREFERENCE_LOSSES["dpo"][1](pc, pr, rc, rr, beta=0.1)[0].item() == pytest.approx(
        -math.log(sigmoid(0.1))
    )
    assert PREFERENCE_LOSSES["pl_dpo"][1](
        torch.stack([pc, pr], dim=1), torch.stack([rc, rr], dim=1), torch.ones(1, 2), beta=0.1
    )[0].item() == pytest.approx(-math.log(sigmoid(0.1)))
    # IPO = (h − 1/(2β))² = (1 − 5)² = 16; KTO, one desirable answer with r = −1 + 1.5 = 0.5
    # and z0 = 0: 1 − σ(0.1 · 0.5). A name wired to another family's or loss's function fails here.
    assert PREFERENCE_LOSSES["ipo"][1](pc, pr, rc, rr, beta=0.1)[0].item() == pytest.approx(16.0)
    assert PREFERENCE_LOSSES["kto"][1](pc, rc, torch.tensor([True]), 0.0, beta=0.1)[
        0
    ].item() == pytest.approx(1 - sigmoid(0.05))
    assert set(PREFERENCE_LOSSES) == {"dpo", "ipo", "kto", "pl_dpo"}


def test_kto_per_example_baseline():
    policy, ref = t(-7.5, -6.5), t(-10.0, -10.0)
    desirable = torch.tensor([True, False])
    # z0 = [max(0.5, 0), max(−1, 0)] = [0.5, 0]
    loss, metrics = kto_loss(policy, ref, desirable, t(0.5, -1.0), beta=0.1)
    # desirable: 1 − σ(0.1·(2.5 − 0.5)) = 1 − σ(0.2); undesirable: 1 − σ(0.1·(0 − 3.5)) = 1 − σ(−0.35)
    expected = ((1 - sigmoid(0.2)) + (1 - sigmoid(-0.35))) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["kl_baseline"] == pytest.approx(0.25)  # mean of the clamped baselines
    with pytest.raises(ValueError, match="kl_baseline"):
        kto_loss(policy, ref, desirable, t(0.5, 0.5, 0.5))
