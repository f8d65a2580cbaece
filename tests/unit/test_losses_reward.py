"""Reward-model losses with numbers derived by hand (softplus(x) = log(1 + e^x) = −log σ(−x))."""

import math

import pytest
import torch

from prefloop.losses import bradley_terry_loss, ranking_loss


def nls(x: float) -> float:
    """−log σ(x) = log(1 + e^−x), written out with math (not the code under test)."""
    return math.log1p(math.exp(-x))


# --------------------------------------------------------------------------- Bradley–Terry


def test_bradley_terry_by_hand():
    chosen = torch.tensor([2.0, 0.5])
    rejected = torch.tensor([1.0, 1.5])
    loss, metrics = bradley_terry_loss(chosen, rejected)
    # differences 1 and −1:
    #   −log σ(1)  = log(1 + e^−1) = 0.31326…
    #   −log σ(−1) = log(1 + e^1)  = 1.31326…
    #   mean = 0.81326…
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert expected == pytest.approx(0.8132616875)
    assert loss.item() == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["margin"] == pytest.approx(0.0)  # (1 − 1) / 2
    assert metrics["chosen_reward"] == pytest.approx(1.25)
    assert metrics["rejected_reward"] == pytest.approx(1.25)
    assert all(isinstance(v, float) for v in metrics.values())


def test_bradley_terry_equal_rewards_is_ln2():
    loss, _ = bradley_terry_loss(torch.zeros(4), torch.zeros(4))
    assert loss.item() == pytest.approx(math.log(2))  # −log σ(0) = log 2


def test_bradley_terry_margin_llama2():
    chosen = torch.tensor([2.0, 0.5])
    rejected = torch.tensor([1.0, 1.5])
    margin = torch.tensor([0.5, 0.0])
    loss, metrics = bradley_terry_loss(chosen, rejected, margin=margin)
    # −log σ(1 − 0.5) = log(1 + e^−0.5) = 0.47408 ; −log σ(−1 − 0) = log(1 + e) = 1.31326
    expected = (math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(1))) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["target_margin"] == pytest.approx(0.25)
    # a margin makes the loss larger for the same rewards (the pair must be separated by more)
    plain, _ = bradley_terry_loss(chosen, rejected)
    assert loss.item() > plain.item()
    # a float margin broadcasts: m = 1 on both pairs -> differences 0 and −2
    loss_f, _ = bradley_terry_loss(chosen, rejected, margin=1.0)
    assert loss_f.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2)


def test_bradley_terry_gradient_sign():
    chosen = torch.tensor([0.3, -0.2], requires_grad=True)
    rejected = torch.tensor([0.1, 0.4], requires_grad=True)
    loss, _ = bradley_terry_loss(chosen, rejected)
    loss.backward()
    # d/d r_c [−log σ(r_c − r_r)] / B = −σ(r_r − r_c) / B < 0 : raising the chosen reward lowers the loss
    assert torch.all(chosen.grad < 0)
    assert torch.all(rejected.grad > 0)
    # first pair exactly: −σ(0.1 − 0.3)/2 = −1/(1 + e^0.2)/2
    assert chosen.grad[0].item() == pytest.approx(-1 / (1 + math.exp(0.2)) / 2, rel=1e-6)


def test_bradley_terry_shape_mismatch():
    with pytest.raises(ValueError, match="rejected_rewards"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="margin"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(3), margin=torch.zeros(2))


# --------------------------------------------------------------------------- K-wise pairwise


def test_ranking_pairwise_k3_by_hand():
    # one prompt, rewards ordered best -> worst as given: [3, 1, 2]
    rewards = torch.tensor([[3.0, 1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, metrics = ranking_loss(rewards, mask, kind="pairwise")
    # C(3,2) = 3 pairs (better − worse): (0,1): 3−1 = 2, (0,2): 3−2 = 1, (1,2): 1−2 = −1
    #   log(1+e^−2) = 0.126928, log(1+e^−1) = 0.313262, log(1+e^1) = 1.313262
    #   weight 1/C(3,2): (0.126928 + 0.313262 + 1.313262) / 3 = 0.584484
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 3
    assert expected == pytest.approx(0.5844840, abs=1e-6)
    assert loss.item() == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # pair (1,2) is mis-ordered
    assert metrics["margin"] == pytest.approx((2 + 1 - 1) / 3)
    assert metrics["num_pairs"] == 3.0


def test_ranking_pairwise_variable_k_mask():
    # row 0 as above (K=3); row 1 has only 2 valid responses, the third is padding (garbage 99)
    rewards = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 99.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, metrics = ranking_loss(rewards, mask)
    row0 = (nls(2) + nls(1) + nls(-1)) / 3  # 1/C(3,2)
    row1 = nls(0.0 - 1.0)  # 1/C(2,2) = 1: one pair, difference −1
    # each prompt weighs the same
    assert loss.item() == pytest.approx((row0 + row1) / 2)
    assert metrics["num_pairs"] == 4.0
    loss.backward()
    assert rewards.grad[1, 2].item() == 0.0  # padding gets no gradient


def test_ranking_pairwise_ties_are_skipped():
    rewards = torch.tensor([[3.0, 1.0, 2.0]])
    mask = torch.ones(1, 3)
    ranks = torch.tensor([[0, 0, 1]])  # responses 0 and 1 tie, both beat response 2
    loss, metrics = ranking_loss(rewards, mask, ranks=ranks)
    # pairs used: (0,2): 3−2 = 1 and (1,2): 1−2 = −1; (0,1) is a tie, skipped
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["num_pairs"] == 2.0
    # an all-tie row carries no preference: loss 0, still differentiable
    r = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss_tie, m = ranking_loss(r, torch.ones(1, 2), ranks=torch.tensor([[0, 0]]))
    assert loss_tie.item() == 0.0 and m["num_pairs"] == 0.0
    loss_tie.backward()
    assert r.grad.tolist() == [[0.0, 0.0]]


def test_ranking_ranks_reorder_columns():
    # ranks say column 2 is best, then column 0, then column 1: same as sorted rewards [2, 3, 1]
    rewards = torch.tensor([[3.0, 1.0, 2.0]])
    ranks = torch.tensor([[1, 2, 0]])
    for kind in ("pairwise", "plackett_luce"):
        got, _ = ranking_loss(rewards, torch.ones(1, 3), kind=kind, ranks=ranks)
        want, _ = ranking_loss(torch.tensor([[2.0, 3.0, 1.0]]), torch.ones(1, 3), kind=kind)
        assert got.item() == pytest.approx(want.item())


def test_ranking_k2_equals_bradley_terry():
    chosen = torch.tensor([0.7, -1.2, 0.0])
    rejected = torch.tensor([0.2, 0.3, 0.4])
    bt, _ = bradley_terry_loss(chosen, rejected)
    rewards = torch.stack([chosen, rejected], dim=1)
    for kind in ("pairwise", "plackett_luce"):
        got, _ = ranking_loss(rewards, torch.ones(3, 2), kind=kind)
        assert got.item() == pytest.approx(bt.item(), rel=1e-6)


def test_ranking_gradient_sign():
    rewards = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    for kind in ("pairwise", "plackett_luce"):
        rewards.grad = None
        loss, _ = ranking_loss(rewards, torch.ones(1, 3), kind=kind)
        loss.backward()
        g = rewards.grad[0]
        # the best response is pushed up, the worst down
        assert g[0] < 0 and g[2] > 0


# --------------------------------------------------------------------------- Plackett–Luce


def test_ranking_plackett_luce_k3_by_hand():
    rewards = torch.tensor([[3.0, 1.0, 2.0]])
    loss, _ = ranking_loss(rewards, torch.ones(1, 3), kind="plackett_luce")
    # −ln [ e^3/(e^3+e^1+e^2) · e^1/(e^1+e^2) · e^2/e^2 ]
    first = 3 - math.log(math.exp(3) + math.exp(1) + math.exp(2))
    second = 1 - math.log(math.exp(1) + math.exp(2))
    expected = -(first + second + 0.0)
    assert expected == pytest.approx(1.7209, abs=1e-4)
    assert loss.item() == pytest.approx(expected)


def test_ranking_plackett_luce_variable_k_and_single_response_rows():
    rewards = torch.tensor([[3.0, 1.0, 2.0], [0.5, -0.5, 7.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    loss, _ = ranking_loss(rewards, mask, kind="plackett_luce")
    row0 = -(
        (3 - math.log(math.exp(3) + math.exp(1) + math.exp(2))) + (1 - math.log(math.exp(1) + math.exp(2)))
    )
    row1 = -(0.5 - math.log(math.exp(0.5) + math.exp(-0.5)))  # = log(1 + e^−1)
    # row 2 has one response: no comparison, left out of the mean
    assert loss.item() == pytest.approx((row0 + row1) / 2)


def test_ranking_plackett_luce_ties_breslow():
    rewards = torch.tensor([[3.0, 1.0, 2.0]])
    ranks = torch.tensor([[0, 0, 1]])
    loss, _ = ranking_loss(rewards, torch.ones(1, 3), kind="plackett_luce", ranks=ranks)
    # tied items 0 and 1 share the denominator of everything not better than them (all three);
    # item 2 is last: e^2/e^2.
    L = math.log(math.exp(3) + math.exp(1) + math.exp(2))
    expected = -((3 - L) + (1 - L) + 0.0)
    assert loss.item() == pytest.approx(expected)
    # symmetric in the tied items: swapping their columns changes nothing
    swapped, _ = ranking_loss(
        torch.tensor([[1.0, 3.0, 2.0]]), torch.ones(1, 3), kind="plackett_luce", ranks=ranks
    )
    assert swapped.item() == pytest.approx(expected)


def test_ranking_bad_kind_and_shapes():
    with pytest.raises(ValueError, match="kind"):
        ranking_loss(torch.zeros(1, 2), torch.ones(1, 2), kind="listnet")
    with pytest.raises(ValueError, match="mask shape"):
        ranking_loss(torch.zeros(1, 2), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        ranking_loss(torch.zeros(2), torch.ones(2))


def test_ranking_rows_are_the_rows_the_loss_averages_over():
    from prefloop.losses.reward import ranking_rows

    # rows: strictly ordered; all tied; a single valid response
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    ranks = torch.tensor([[0, 1, 2], [0, 0, 0], [0, 0, 0]])
    assert ranking_rows(mask, "pairwise", ranks).tolist() == [True, False, False]
    assert ranking_rows(mask, "plackett_luce", ranks).tolist() == [True, True, False]
    # the all-tied row counts in the Plackett–Luce mean: loss = (row 0 + row 1) / 2
    rewards = torch.tensor([[1.0, 0.0, -1.0], [0.5, -0.5, 0.0], [2.0, 0.0, 0.0]])
    loss, _ = ranking_loss(rewards, mask, kind="plackett_luce", ranks=ranks)
    row0 = -(1.0 - math.log(math.exp(1) + 1 + math.exp(-1))) - (0.0 - math.log(1 + math.exp(-1)))
    row1 = -(0.5 - 0.5) + 2 * math.log(math.exp(0.5) + math.exp(-0.5))  # one tie group: Σ s − 2 log Σ e^s
    assert loss.item() == pytest.approx((row0 + row1) / 2)


def test_bradley_terry_soft_labels_by_hand():
    # z = 1 for both pairs; targets q = 1 and 0.6:
    # pair 1: −log σ(1) = 0.313262;  pair 2: −[0.6 log σ(1) + 0.4 log σ(−1)] = 0.6·0.313262 + 0.4·1.313262 = 0.713262
    chosen, rejected = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    loss, _ = bradley_terry_loss(chosen, rejected, soft_label=torch.tensor([1.0, 0.6]))
    assert loss.item() == pytest.approx((0.313262 + 0.713262) / 2, abs=1e-6)
    hard, _ = bradley_terry_loss(chosen, rejected)
    same, _ = bradley_terry_loss(chosen, rejected, soft_label=torch.ones(2))
    assert same.item() == pytest.approx(hard.item())
    # q = 1/2 is minimized at z = 0: the gradient there vanishes
    z = torch.zeros(1, requires_grad=True)
    bradley_terry_loss(z, torch.zeros(1), soft_label=torch.tensor([0.5]))[0].backward()
    assert z.grad.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="soft_label"):
        bradley_terry_loss(chosen, rejected, soft_label=torch.tensor([1.5, 0.5]))
