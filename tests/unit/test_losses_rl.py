"""Online RL math (prefloop.losses.rl) with numbers derived by hand in the comments."""

import math

import pytest
import torch

from prefloop.losses import (
    AGGREGATION_OF_METHOD,
    AdaptiveKLController,
    FixedKLController,
    aggregate_loss,
    discounted_returns,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_estimate,
    kl_loss,
    kl_penalized_rewards,
    logprob_mismatch,
    ppo_policy_loss,
    ptx_loss,
    reinforce_plus_plus_advantages,
    value_loss,
)


def t(rows, grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def close(got: torch.Tensor, want) -> None:
    torch.testing.assert_close(got, t(want), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- GAE and returns


def test_gae_by_hand_with_padding():
    rewards = t([[0.0, 0.0, 1.0], [0.2, 2.0, 9.0]])
    values = t([[0.5, 0.4, 0.3], [1.0, 0.5, 7.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # Row 0: δ2 = 1 + 0 − 0.3 = 0.7 → A2 = 0.7
    #        δ1 = 0 + 0.3 − 0.4 = −0.1 → A1 = −0.1 + 0.5·0.7 = 0.25
    #        δ0 = 0 + 0.4 − 0.5 = −0.1 → A0 = −0.1 + 0.5·0.25 = 0.025
    # Row 1 (last real token t=1, so V_2 counts as 0 and the padded 9.0 / 7.0 are ignored):
    #        δ1 = 2 + 0 − 0.5 = 1.5 → A1 = 1.5;  δ0 = 0.2 + 0.5 − 1 = −0.3 → A0 = −0.3 + 0.75 = 0.45
    close(adv, [[0.025, 0.25, 0.7], [0.45, 1.5, 0.0]])
    # returns = A + V on real tokens, 0 on padding.
    close(ret, [[0.525, 0.65, 1.0], [1.45, 2.0, 0.0]])


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = t([[1.0, 2.0]])
    values = t([[0.3, -0.4]])
    mask = t([[1, 1]])
    # γ = 0.9: G = [1 + 0.9·2, 2] = [2.8, 2]; with λ = 1, A = G − V and returns = G.
    close(discounted_returns(rewards, mask, gamma=0.9), [[2.8, 2.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    close(adv, [[2.5, 2.4]])
    close(ret, [[2.8, 2.0]])


def test_gae_carries_no_gradient():
    values = t([[0.1, 0.2]], grad=True)
    adv, ret = gae(t([[0.0, 1.0]]), values, t([[1, 1]]))
    assert not adv.requires_grad and not ret.requires_grad


# --------------------------------------------------------------------------- KL shaping


def test_kl_penalized_rewards_k1_by_hand():
    scores = t([2.0, -1.0])
    logps = t([[-1.0, -2.0, -3.0], [-0.5, -1.0, 0.0]])
    ref = t([[-1.5, -2.0, -2.0], [-1.0, -0.5, 5.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])  # row 1 has 2 real tokens; its 0.0 / 5.0 are padding
    rewards, kl = kl_penalized_rewards(scores, logps, ref, mask, kl_coef=0.1, kind="k1")
    # k1 = logp − ref: row 0 [0.5, 0, −1]; row 1 [0.5, −0.5, (pad) 0].
    close(kl, [[0.5, 0.0, -1.0], [0.5, -0.5, 0.0]])
    # r = −0.1·kl, score added at the last real token (index 2 and index 1).
    close(rewards, [[-0.05, 0.0, 0.1 + 2.0], [-0.05, 0.05 - 1.0, 0.0]])


def test_kl_penalized_rewards_k3_by_hand():
    rewards, kl = kl_penalized_rewards(
        t([2.0]), t([[-1.0, -2.0, -3.0]]), t([[-1.5, -2.0, -2.0]]), t([[1, 1, 1]]), 0.1, "k3"
    )
    # log ρ = ref − logp = [−0.5, 0, 1]; k3 = e^{log ρ} − 1 − log ρ
    k3 = [math.exp(-0.5) - 1 + 0.5, 0.0, math.e - 1 - 1]  # [0.106531, 0, 0.718282]
    close(kl, [k3])
    close(rewards, [[-0.1 * k3[0], 0.0, -0.1 * k3[2] + 2.0]])
    with pytest.raises(ValueError, match="no real token"):
        kl_penalized_rewards(t([1.0]), t([[0.0]]), t([[0.0]]), t([[0]]), 0.1)
    with pytest.raises(ValueError, match="k1"):
        kl_penalized_rewards(t([1.0]), t([[0.0]]), t([[0.0]]), t([[1]]), 0.1, kind="k2")


# --------------------------------------------------------------------------- PPO policy loss

# Three real tokens: row 0 has two, row 1 one (its second slot is padding with garbage).
# ρ = [1.5, 0.5 | 1.1, pad], A = [1, 1 | −2, pad], ε = 0.2.
RATIOS = [[1.5, 0.5], [1.1, 3.0]]
ADV = [[1.0, 1.0], [-2.0, 100.0]]
MASK = [[1, 1], [1, 0]]


def _ppo_inputs():
    old = t([[-1.0, -2.0], [-0.5, -0.7]])
    logps = (old + torch.log(t(RATIOS))).detach().requires_grad_(True)
    return logps, old, t(ADV), t(MASK)


def test_ppo_policy_loss_by_hand():
    logps, old, adv, mask = _ppo_inputs()
    loss, m = ppo_policy_loss(logps, old, adv, mask, clip_eps=0.2)
    # token 1: max(−1.5, −1·1.2) = −1.2   (clipped branch larger: the gradient is cut)
    # token 2: max(−0.5, −1·0.8) = −0.5   (unclipped)
    # token 3: max(2.2, 2·1.1) = 2.2      (inside the clip range)
    # token-mean over the 3 real tokens: (−1.2 − 0.5 + 2.2) / 3 = 0.5/3
    assert loss.item() == pytest.approx(0.5 / 3)
    assert m["policy/clip_fraction"] == pytest.approx(1 / 3)
    # approx KL = mean k3 = mean[(ρ − 1) − ln ρ] = (0.094535 + 0.193147 + 0.004690) / 3
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.5, 1.1)]
    assert m["policy/approx_kl"] == pytest.approx(sum(k3) / 3)
    assert m["policy/ratio_max"] == pytest.approx(1.5) and m["policy/ratio_min"] == pytest.approx(0.5)
    assert m["policy/ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.1) / 3)
    loss.backward()
    # dℓ/dlogp = −A·ρ on unclipped tokens, 0 on the clipped one, 0 on padding; ÷3 for the mean.
    close(logps.grad, [[0.0, -0.5 / 3], [2.2 / 3, 0.0]])


@pytest.mark.parametrize(
    "aggregation, expected",
    [
        ("token-mean", 0.5 / 3),
        ("seq-mean-token-mean", ((-1.2 - 0.5) / 2 + 2.2) / 2),  # 0.675
        ("seq-mean-token-sum", ((-1.2 - 0.5) + 2.2) / 2),  # 0.25
    ],
)
def test_ppo_policy_loss_aggregations(aggregation, expected):
    loss, _ = ppo_policy_loss(*_ppo_inputs(), clip_eps=0.2, aggregation=aggregation)
    assert loss.item() == pytest.approx(expected)


def test_ratio_one_gives_minus_mean_advantage():
    old = t([[-1.0, -2.0], [-0.5, -0.7]])
    loss, m = ppo_policy_loss(old.clone(), old, t(ADV), t(MASK))
    assert loss.item() == pytest.approx(-(1 + 1 - 2) / 3)  # ρ = 1 everywhere → −mean A = 0
    assert m["policy/clip_fraction"] == 0 and m["policy/approx_kl"] == 0 and m["policy/ratio_mean"] == 1


def test_dual_clip_by_hand():
    old = t([[0.0, 0.0, 0.0]])
    logps = torch.log(t([[5.0, 5.0, 0.5]]))
    adv = t([[-2.0, 1.0, -2.0]])
    loss, m = ppo_policy_loss(logps, old, adv, t([[1, 1, 1]]), clip_eps=0.2, dual_clip=3.0)
    # token 1 (A = −2, ρ = 5): max(10, 2.4) = 10, dual clip min(10, −3·−2 = 6) = 6
    # token 2 (A = 1, ρ = 5): max(−5, −1.2) = −1.2 (dual clip applies to A < 0 only)
    # token 3 (A = −2, ρ = 0.5): max(1, 1.6) = 1.6 < 6, unchanged
    assert loss.item() == pytest.approx((6 - 1.2 + 1.6) / 3)
    assert m["policy/dual_clip_fraction"] == pytest.approx(1 / 3)
    plain, _ = ppo_policy_loss(logps, old, adv, t([[1, 1, 1]]), clip_eps=0.2)
    assert plain.item() == pytest.approx((10 - 1.2 + 1.6) / 3)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_policy_loss(logps, old, adv, t([[1, 1, 1]]), dual_clip=1.0)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape mismatch"):
        ppo_policy_loss(t([[0.0, 0.0]]), t([[0.0]]), t([[1.0]]), t([[1]]))
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_loss(t([[1.0]]), t([[1]]), "mean")


# --------------------------------------------------------------------------- value loss


def test_value_loss_by_hand():
    values = t([[1.0, 0.0]], grad=True)
    loss, m = value_loss(values, t([[0.5, 0.1]]), t([[2.0, -1.0]]), t([[1, 1]]), clip_eps=0.2)
    # token 1: (1 − 2)² = 1; clipped V = 0.5 + clip(0.5, ±0.2) = 0.7 → (0.7 − 2)² = 1.69 → 1.69
    # token 2: (0 + 1)² = 1; clipped V = 0.1 + clip(−0.1) = 0.0 → 1 → 1 (tie: not counted as clipped)
    # ½ · token mean = 0.5 · (1.69 + 1) / 2 = 0.6725
    assert loss.item() == pytest.approx(0.6725)
    assert m["value/clip_fraction"] == pytest.approx(0.5)
    assert m["value/mse"] == pytest.approx(1.0)
    loss.backward()
    # token 1's loss is the clipped branch, constant in V (|V − V_old| > ε): gradient 0;
    # token 2: d/dV ½(V − R)² / 2 = (0 + 1) / 2 = 0.5
    close(values.grad, [[0.0, 0.5]])
    unclipped, _ = value_loss(t([[1.0, 0.0]]), t([[0.5, 0.1]]), t([[2.0, -1.0]]), t([[1, 1]]), clip_eps=None)
    assert unclipped.item() == pytest.approx(0.5)  # ½ · (1 + 1) / 2


# --------------------------------------------------------------------------- group baselines


def test_group_advantages_by_hand():
    r = t([[1.0, 2.0, 3.0, 6.0], [4.0, 4.0, 4.0, 4.0]])
    # Row 0: mean 3 → r − mean = [−2, −1, 0, 3]; sample std = sqrt(14/3) = 2.160247
    close(group_advantages(r, "dr_grpo"), [[-2.0, -1.0, 0.0, 3.0], [0.0] * 4])
    std = math.sqrt(14 / 3)
    close(group_advantages(r, "grpo"), [[x / (std + 1e-4) for x in (-2, -1, 0, 3)], [0.0] * 4])
    # RLOO: mean of the others = (12 − r_i)/3 → [1 − 11/3, 2 − 10/3, 3 − 3, 6 − 2] (= 4/3·(r − mean))
    close(group_advantages(r, "rloo"), [[-8 / 3, -4 / 3, 0.0, 4.0], [0.0] * 4])
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(t([[1.0], [2.0]]), "rloo")
    with pytest.raises(ValueError, match="grpo"):
        group_advantages(r, "ppo")


def test_reinforce_plus_plus_global_normalisation_by_hand():
    rewards = t([[0.0, 0.0, 1.0], [0.5, -1.0, 7.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    # Returns-to-go (γ = 1): row 0 [1, 1, 1]; row 1 [−0.5, −1, pad].
    # Over the 5 real tokens: mean 0.3, deviations [0.7, 0.7, 0.7, −0.8, −1.3],
    # Bessel variance 3.8/4 = 0.95.
    sd = math.sqrt(0.95 + 1e-8)
    close(
        reinforce_plus_plus_advantages(rewards, mask),
        [[0.7 / sd, 0.7 / sd, 0.7 / sd], [-0.8 / sd, -1.3 / sd, 0.0]],
    )


# --------------------------------------------------------------------------- KL control


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    # KL 9: error 9/6 − 1 = 0.5, clipped to 0.2 → β = 0.1·(1 + 0.2·256/10000) = 0.100512
    assert ctl.update(9.0, 256) == pytest.approx(0.100512)
    # KL 3: error −0.5 → −0.2 → β = 0.100512·(1 − 0.00512)
    assert ctl.update(3.0, 256) == pytest.approx(0.100512 * 0.99488)
    # KL 6.6: error 0.1 (inside the clip) with n = horizon → β·1.1
    before = ctl.value
    assert ctl.update(6.6, 10000) == pytest.approx(before * 1.1)
    resumed = AdaptiveKLController(1.0, 1.0, 1.0)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.update(7.0, 5) == ctl.update(7.0, 5)
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 10) == 0.05 and fixed.value == 0.05
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 100)


# --------------------------------------------------------------------------- entropy, KL loss, ptx


def test_entropy_from_logits_by_hand():
    logits = t([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9]]], grad=True)
    h = entropy_from_logits(logits)
    # Uniform over 4 → ln 4; probabilities [1/4, 3/4] → −(¼ ln ¼ + ¾ ln ¾) = 0.562335
    close(h, [[math.log(4.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]])
    h.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # Chunking does not change the result.
    z = torch.randn(5, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(entropy_from_logits(z, chunk_rows=2), entropy_from_logits(z, chunk_rows=5))


def test_kl_loss_matches_the_estimator():
    logps, ref, mask = t([[-1.0, -2.0], [-0.5, 3.0]]), t([[-1.5, -2.0], [-1.0, 0.0]]), t([[1, 1], [1, 0]])
    loss, _ = kl_loss(logps, ref, mask, kind="k3")
    k3 = kl_estimate(logps, ref, "k3")
    assert loss.item() == pytest.approx((k3[0, 0] + k3[0, 1] + k3[1, 0]).item() / 3)


def test_ptx_loss_is_the_seeds_formula():
    logps = t([[-1.0, -2.0], [-3.0, -50.0]], grad=True)
    mask = t([[1, 1], [1, 0]])
    loss, m = ptx_loss(logps, mask, coef=0.5)
    # log π(x) per text: −3 and −3 → E_x = −3; loss = −γ·E = 0.5·3 = 1.5
    assert loss.item() == pytest.approx(1.5) and m["ptx/nll"] == pytest.approx(3.0)
    loss.backward()
    close(logps.grad, [[-0.25, -0.25], [-0.25, 0.0]])  # −γ / (number of texts) on real tokens
    token_mean, _ = ptx_loss(logps, mask, coef=0.5, aggregation="token-mean")
    assert token_mean.item() == pytest.approx(0.5 * (1 + 2 + 3) / 3)


def test_seq_mean_token_sum_constant_and_method_defaults():
    x, mask = t([[1.0, 2.0], [3.0, 0.0]]), t([[1, 1], [1, 0]])
    assert aggregate_loss(x, mask, "seq-mean-token-sum", constant=4.0).item() == pytest.approx(
        (3 + 3) / 2 / 4
    )
    assert AGGREGATION_OF_METHOD == {
        "dapo": "token-mean",
        "grpo": "seq-mean-token-mean",
        "dr_grpo": "seq-mean-token-sum",
    }


def test_logprob_mismatch_by_hand():
    sampler = t([[-1.0, -2.0], [-3.0, 0.0]])
    trainer = t([[-1.1, -1.7], [-3.0, 9.0]])  # the 9.0 is padding
    m = logprob_mismatch(sampler, trainer, t([[1, 1], [1, 0]]))
    # Δ = trainer − sampler on real tokens: [−0.1, 0.3, 0]
    assert m["logprobs/mismatch_mean"] == pytest.approx(0.4 / 3)
    assert m["logprobs/mismatch_max"] == pytest.approx(0.3)
    assert m["logprobs/mismatch_bias"] == pytest.approx(0.2 / 3)
