"""Diffusion-DPO's loss with numbers derived by hand."""

import math

import pytest
import torch

from prefloop.losses import diffusion_dpo_loss


def t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


# One pair used throughout: on the preferred image the policy's denoising error is 0.30 against
# the reference's 0.40 (−0.10: the policy denoises it better), on the rejected image 0.50 against
# 0.45 (+0.05). Δ = −0.10 − (+0.05) = −0.15. With β = 0.2 and T = 10, β·T = 2 and the logit
# −β·T·Δ = 0.3.
def pair(grad: bool = False):
    return t(0.30, grad=grad), t(0.50, grad=grad), t(0.40), t(0.45)


def test_diffusion_dpo_by_hand():
    loss, metrics = diffusion_dpo_loss(*pair(), beta=0.2, num_timesteps=10)
    # −log σ(0.3) = log(1 + e^−0.3) = log(1.740818) = 0.554355
    expected = math.log(1 + math.exp(-0.3))
    assert expected == pytest.approx(0.554355, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    assert metrics["rewards/chosen"] == pytest.approx(0.2)  # −2 · (0.30 − 0.40)
    assert metrics["rewards/rejected"] == pytest.approx(-0.1)  # −2 · (0.50 − 0.45)
    assert metrics["rewards/margin"] == pytest.approx(0.3)  # the logit
    assert metrics["rewards/accuracy"] == 1.0
    assert metrics["errors/policy_chosen"] == pytest.approx(0.30)
    assert metrics["errors/policy_rejected"] == pytest.approx(0.50)
    assert metrics["errors/ref_chosen"] == pytest.approx(0.40)
    assert metrics["errors/ref_rejected"] == pytest.approx(0.45)
    assert all(isinstance(v, float) for v in metrics.values())


def test_diffusion_dpo_gradient_signs_by_hand():
    pc, pr, rc, rr = pair(grad=True)
    loss, _ = diffusion_dpo_loss(pc, pr, rc, rr, beta=0.2, num_timesteps=10)
    loss.backward()
    # L = −log σ(z), z = −β·T·(e_w − e_w^ref − e_l + e_l^ref): dL/de_w = β·T·σ(−z) = 2 σ(−0.3)
    # = 2 · 0.425557 = 0.851115 > 0 — gradient descent lowers the error on the preferred image —
    # and dL/de_l = −0.851115 < 0: it raises the error on the rejected one.
    g = 2 * (1 / (1 + math.exp(0.3)))
    assert g == pytest.approx(0.851115, abs=1e-6)
    assert pc.grad.item() == pytest.approx(g)
    assert pr.grad.item() == pytest.approx(-g)


def test_diffusion_dpo_batch_mean_by_hand():
    # pair 1 as above (logit 0.3); pair 2: policy 0.6 vs ref 0.5 on the preferred image (+0.1),
    # 0.2 vs 0.3 on the rejected one (−0.1): Δ = 0.2, logit = −2 · 0.2 = −0.4.
    pc, pr, rc, rr = t(0.30, 0.6), t(0.50, 0.2), t(0.40, 0.5), t(0.45, 0.3)
    loss, metrics = diffusion_dpo_loss(pc, pr, rc, rr, beta=0.2, num_timesteps=10)
    # log(1 + e^−0.3) = 0.554355, log(1 + e^0.4) = 0.913015; mean 0.733685
    expected = (math.log(1 + math.exp(-0.3)) + math.log(1 + math.exp(0.4))) / 2
    assert expected == pytest.approx(0.733685, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    assert metrics["rewards/accuracy"] == 0.5
    assert metrics["rewards/margin"] == pytest.approx((0.3 - 0.4) / 2)
    assert metrics["rewards/chosen"] == pytest.approx((0.2 + -0.2) / 2)  # −2·(−0.1), −2·(+0.1)


def test_diffusion_dpo_policy_equal_to_reference_is_ln2():
    w, l_ = t(0.3, 0.9, 0.1), t(0.4, 0.2, 0.7)
    loss, metrics = diffusion_dpo_loss(w, l_, w.clone(), l_.clone(), beta=5.0, num_timesteps=100)
    assert loss.item() == pytest.approx(math.log(2))  # Δ = 0 → −log σ(0)
    assert metrics["rewards/accuracy"] == 0.0  # equal rewards are not "correct"


def test_diffusion_dpo_depends_on_beta_times_T_only():
    a, _ = diffusion_dpo_loss(*pair(), beta=0.2, num_timesteps=10)
    b, _ = diffusion_dpo_loss(*pair(), beta=0.02, num_timesteps=100)
    assert a.item() == pytest.approx(b.item())


def test_diffusion_dpo_rejects_bad_input():
    with pytest.raises(ValueError, match="beta must be > 0"):
        diffusion_dpo_loss(*pair(), beta=0.0, num_timesteps=10)
    with pytest.raises(ValueError, match="num_timesteps"):
        diffusion_dpo_loss(*pair(), beta=0.1, num_timesteps=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        diffusion_dpo_loss(t(0.1, 0.2), t(0.1), t(0.1), t(0.1), beta=0.1, num_timesteps=10)
