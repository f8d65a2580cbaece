"""Active-selection scores by hand on tiny ensembles."""

import math

import numpy as np
import pytest

from prefloop.teachers.selection import (
    binary_entropy,
    item_scores,
    pair_probabilities,
    priorities,
    select,
    selector_scores,
)

# 2 members, 3 pairs: rewards[m, i] = (r_a, r_b)
R = np.array(
    [
        [[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]],
        [[0.0, 0.0], [2.0, 0.0], [-1.0, 0.0]],
    ]
)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_probabilities_and_entropy_by_hand():
    p = pair_probabilities(R)
    assert p[0] == pytest.approx([0.5, sig(2), sig(1)]) and p[1] == pytest.approx([0.5, sig(2), sig(-1)])
    assert binary_entropy(np.array([0.5, 0.0]))[0] == pytest.approx(math.log(2))
    assert binary_entropy(np.array([0.5, 0.0]))[1] == pytest.approx(0.0, abs=1e-9)


def test_disagreement_is_the_variance_across_members():
    # pair 2: p = σ(1) = 0.7311 and σ(−1) = 0.2689 -> variance ((0.7311 − 0.2689)/2)^2 = 0.05341
    s = selector_scores("disagreement", R)
    assert s == pytest.approx([0.0, 0.0, ((sig(1) - sig(-1)) / 2) ** 2])
    assert select("disagreement", R, 1) == [2]


def test_entropy_prefers_the_mean_closest_to_a_coin():
    # mean p: 0.5, σ(2) = 0.881, 0.5 (σ(1) and σ(−1) average to exactly 1/2)
    s = selector_scores("entropy", R)
    assert s == pytest.approx([math.log(2), binary_entropy(np.array([sig(2)]))[0], math.log(2)])
    assert set(select("entropy", R, 2, rng=np.random.default_rng(0))) == {0, 2}


def test_ucb_is_the_best_optimistic_reply_of_the_pair():
    # pair 2, reply a: mean 0, std 1 -> 0 + 2*1 = 2; pair 1, reply a: mean 2, std 0 -> 2; pair 0: 0
    s = selector_scores("ucb", R, ucb_c=2.0)
    assert s == pytest.approx([0.0, 2.0, 2.0])
    assert select("ucb", R, 1, ucb_c=2.0, exclude=[1]) == [2]


def test_uniform_exclusion_and_priorities():
    rng = np.random.default_rng(3)
    picked = select("uniform", np.zeros((1, 10, 2)), 4, rng=rng, exclude=[0, 1])
    assert len(picked) == 4 == len(set(picked)) and not {0, 1} & set(picked)
    assert (
        priorities("disagreement", R) == pytest.approx([0.0, 0.5, 1.0])
        or priorities("disagreement", R)[2] == 1.0
    )
    with pytest.raises(ValueError, match="at least 2"):
        selector_scores("disagreement", R[:1])
    with pytest.raises(ValueError, match="unknown selector"):
        selector_scores("greedy", R)
    with pytest.raises(ValueError, match="shape"):
        selector_scores("entropy", np.zeros((2, 3)))


def test_item_scores_take_the_best_pair():
    # item 0: members agree on every pair -> disagreement 0; item 1: responses 0 and 2 split the members
    items = [np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]]), np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])]
    s = item_scores("disagreement", items)
    assert s[0] == pytest.approx(0.0) and s[1] == pytest.approx(((sig(1) - sig(-1)) / 2) ** 2)
    assert item_scores("entropy", [np.zeros((1, 1))]) == [0.0]  # one response: no pair


def test_pair_probabilities_are_finite_and_warning_free_for_huge_reward_gaps():
    import warnings

    from prefloop.teachers.selection import pair_probabilities

    r = np.array([[[800.0, -800.0], [-800.0, 800.0], [1.0, 0.0]]])  # [M=1, N=3, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would raise here
        p = pair_probabilities(r)
    # σ(1600) = 1, σ(−1600) = 0, σ(1) = 1 / (1 + e^{-1}) = 0.7310586
    assert p[0].tolist() == pytest.approx([1.0, 0.0, 0.7310586], abs=1e-7)
