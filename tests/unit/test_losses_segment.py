"""Christiano et al.'s segment comparison loss with numbers derived by hand."""

import math

import pytest
import torch

from prefloop.losses import segment_preference_loss


def t(*rows, grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def test_one_pair_with_random_answers_by_hand():
    a = t([1.0, 0.5], grad=True)  # R_a = 1.5
    b = t([0.5, 0.0], grad=True)  # R_b = 0.5, ΔR = 1
    loss, metrics = segment_preference_loss(a, b, torch.tensor([1.0]), random_answer=0.1)
    # σ(1) = 0.7310586; P(a ≻ b) = 0.9 · 0.7310586 + 0.05 = 0.7079527; loss = −log P = 0.3453780
    assert loss.item() == pytest.approx(0.3453780, abs=1e-6)
    assert metrics["segment/accuracy"] == 1.0
    assert metrics["segment/p_preferred"] == pytest.approx(0.7079527, abs=1e-6)
    assert metrics["segment/return_gap"] == pytest.approx(1.0)
    loss.backward()
    # dL/dR_a = −(1/P) · 0.9 · σ(1)(1 − σ(1)) = −0.9 · 0.1966119 / 0.7079527 = −0.2499471, the same
    # for every step of a (the sum), and the opposite for b.
    assert a.grad[0].tolist() == pytest.approx([-0.2499471, -0.2499471], abs=1e-6)
    assert b.grad[0].tolist() == pytest.approx([0.2499471, 0.2499471], abs=1e-6)


def test_batch_mean_with_a_tie_and_a_b_label():
    a = t([0.0, 0.0], [0.0, 0.0])
    b = t([0.0, 0.0], [1.0, 1.0])
    loss, metrics = segment_preference_loss(a, b, torch.tensor([0.5, 0.0]), random_answer=0.1)
    # row 1: ΔR = 0, P = 0.5, tie label ½ → −(½ log ½ + ½ log ½) = log 2 = 0.6931472
    # row 2: ΔR = −2, P = 0.9 σ(−2) + 0.05 = 0.9 · 0.1192029 + 0.05 = 0.1572826; label b → −log(1 − P) = 0.1711236
    assert loss.item() == pytest.approx((math.log(2) + 0.1711236) / 2, abs=1e-6)
    assert metrics["segment/accuracy"] == 1.0  # only the strict label counts; b's return is larger
    # p_preferred: ½ for the tie, 1 − P = 0.8427174 for row 2 → mean 0.6713587
    assert metrics["segment/p_preferred"] == pytest.approx(0.6713587, abs=1e-6)


def test_without_random_answers_is_plain_bradley_terry():
    a = t([0.0])
    b = t([2.0])
    loss, metrics = segment_preference_loss(a, b, torch.tensor([1.0]), random_answer=0.0)
    # label a but ΔR = −2: −log σ(−2) = log(1 + e²) = 2.1269280
    assert loss.item() == pytest.approx(2.1269280, abs=1e-6)
    assert metrics["segment/accuracy"] == 0.0
    # the random-answer floor bounds the loss: with ε = 0.1 it is at most −log(0.05) = 2.9957
    big, _ = segment_preference_loss(t([0.0]), t([100.0]), torch.tensor([1.0]), random_answer=0.1)
    assert big.item() == pytest.approx(-math.log(0.9 * (1 / (1 + math.exp(100))) + 0.05), abs=1e-9)
    assert big.item() <= -math.log(0.05) + 1e-12


def test_only_ties_give_nan_accuracy_and_bad_inputs_fail():
    _, metrics = segment_preference_loss(t([1.0]), t([0.0]), torch.tensor([0.5]))
    assert math.isnan(metrics["segment/accuracy"])
    with pytest.raises(ValueError, match="same"):
        segment_preference_loss(t([1.0, 2.0]), t([1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="labels shape"):
        segment_preference_loss(t([1.0]), t([1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="random_answer"):
        segment_preference_loss(t([1.0]), t([1.0]), torch.tensor([1.0]), random_answer=1.0)
    with pytest.raises(ValueError, match="labels must be"):
        segment_preference_loss(t([1.0]), t([1.0]), torch.tensor([2.0]))
