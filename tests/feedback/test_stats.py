"""Pure statistics of the feedback service: agreement, consensus, ratings, quality report.

Every expected number is derived by hand in the comments next to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefloop.feedback.aggregation import ranked_pairs
from prefloop.feedback.agreement import (
    annotator_pair_agreement,
    flag_outliers,
    groups_to_ranks,
    kendall_tau,
    krippendorff_alpha,
    percent_agreement,
)
from prefloop.feedback.ratings import ELO_FACTOR, bradley_terry, elo, fit_bradley_terry, win_matrix


# --------------------------------------------------------------------------- Krippendorff's alpha
def test_alpha_nominal_two_annotators_by_hand():
    # units: (a,a) (a,b) (b,b) (b,b); each unit has m_u = 2 so each ordered pair weighs 1/(2-1) = 1
    # o_aa = 2, o_ab = o_ba = 1, o_bb = 4 -> n_a = 3, n_b = 5, n = 8
    # observed disagreement sum = o_ab + o_ba = 2; expected sum = 2 * n_a * n_b = 30
    # alpha = 1 - (n - 1) * 2 / 30 = 1 - 14/30 = 16/30
    units = {
        1: {"A": "a", "B": "a"},
        2: {"A": "a", "B": "b"},
        3: {"A": "b", "B": "b"},
        4: {"A": "b", "B": "b"},
    }
    assert krippendorff_alpha(units, "nominal") == pytest.approx(16 / 30)


def test_alpha_interval_and_ordinal_by_hand():
    # units (1,2) (3,3) (2,3): o_12 = o_21 = 1, o_33 = 2, o_23 = o_32 = 1 -> n_1 = 1, n_2 = 2, n_3 = 3, n = 6
    # interval: observed = 2*1 + 2*1 = 4; expected = 2*(1*2*1 + 1*3*4 + 2*3*1) = 40 -> 1 - 5*4/40 = 0.5
    # ordinal d2: (1,2) = (3 - 1.5)^2 = 2.25, (2,3) = (5 - 2.5)^2 = 6.25, (1,3) = (6 - 2)^2 = 16
    #   observed = 2*2.25 + 2*6.25 = 17; expected = 2*(1*2*2.25 + 1*3*16 + 2*3*6.25) = 180
    #   alpha = 1 - 5*17/180 = 95/180
    units = {1: {"A": 1, "B": 2}, 2: {"A": 3, "B": 3}, 3: {"A": 2, "B": 3}}
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.5)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(95 / 180)


def test_alpha_published_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units,
    # missing values; published alphas: nominal 0.743, ordinal 0.815, interval 0.849
    n = None
    coders = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        "C": [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    }
    units = {u: {c: v[u] for c, v in coders.items()} for u in range(12)}
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_undefined_and_bad_level():
    assert math.isnan(krippendorff_alpha({1: {"A": 1, "B": 1}, 2: {"A": 1, "B": 1}}))  # no variation
    assert math.isnan(krippendorff_alpha({1: {"A": 1}}))  # nothing pairable
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha({1: {"A": 1, "B": 2}}, "ratio")


# --------------------------------------------------------------------------- Kendall's tau-b, agreement
def test_kendall_tau_without_and_with_ties():
    # x<y<z vs x<z<y: pairs (x,y) concordant, (x,z) concordant, (y,z) discordant -> (2-1)/3
    assert kendall_tau({"x": 1, "y": 2, "z": 3}, {"x": 1, "y": 3, "z": 2}) == pytest.approx(1 / 3)
    # a ties x,y: (x,y) tied in a only; (x,z), (y,z) concordant: n0 = 3, t_a = 1, t_b = 0
    # tau_b = 2 / sqrt((3-1) * 3) = 2 / sqrt(6)
    assert kendall_tau({"x": 0, "y": 0, "z": 1}, {"x": 0, "y": 1, "z": 2}) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau({"x": 1, "y": 2}, {"x": 2, "y": 1}) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau({"x": 1, "y": 1}, {"x": 1, "y": 2}))  # a ties everything


def test_groups_to_ranks_mid_ranks():
    assert groups_to_ranks([["a", "b"], ["c"], ["d", "e", "f"]]) == {
        "a": 1.5,
        "b": 1.5,
        "c": 3.0,
        "d": 5.0,
        "e": 5.0,
        "f": 5.0,
    }


def test_percent_agreement_by_hand():
    # u1: A=B agree, A/C and B/C disagree -> 1 of 3; u2: A=B -> 1 of 1; pooled 2/4
    units = {"u1": {"A": "x", "B": "x", "C": "y"}, "u2": {"A": "x", "B": "x"}, "u3": {"A": "x"}}
    assert percent_agreement(units) == pytest.approx(0.5)
    # per annotator: A agrees with B twice, disagrees with C once -> 2/3; C -> 0/2
    per = annotator_pair_agreement(units)
    assert per["A"] == pytest.approx(2 / 3) and per["B"] == pytest.approx(2 / 3) and per["C"] == 0.0


def test_flag_outliers_mad_rule_and_gold():
    # median 0.85; |dev| = .05 0 .05 .03 .75 -> MAD 0.05; 1.4826*0.05 = 0.074 < floor 0.1
    # cutoff = 0.85 - 2*0.1 = 0.65 -> only e (0.1) is below; c fails gold (0.4 < 0.6)
    scores = {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.88, "e": 0.1}
    flags = flag_outliers(scores, {"c": 0.4, "a": 0.9})
    assert {a for a, r in flags.items() if r} == {"c", "e"}
    assert "gold accuracy 0.40" in flags["c"] and "cutoff 0.65" in flags["e"]
    # fewer than 3 scored annotators: the agreement rule does not apply
    assert flag_outliers({"a": 1.0, "b": -1.0}) == {"a": None, "b": None}


# --------------------------------------------------------------------------- ranked pairs
def test_ranked_pairs_condorcet_cycle():
    # 4 voters A>B>C, 3 voters B>C>A, 2 voters C>A>B
    # P(A>B) = 4+2 = 6 vs 3 -> margin 3; P(B>C) = 4+3 = 7 vs 2 -> margin 5; P(C>A) = 3+2 = 5 vs 4 -> 1
    # cycle A>B>C>A: lock B>C (5), A>B (3), skip C>A (1, closes the cycle) -> A, B, C
    rankings = [[["A"], ["B"], ["C"]]] * 4 + [[["B"], ["C"], ["A"]]] * 3 + [[["C"], ["A"], ["B"]]] * 2
    assert ranked_pairs(rankings) == [["A"], ["B"], ["C"]]


def test_ranked_pairs_tennessee_example():
    # Tideman's textbook example: 42 Memphis, 26 Nashville, 15 Chattanooga, 17 Knoxville voters.
    # N beats everyone (58% each), C beats K (83%) and M (58%), K beats M (58%) -> N, C, K, M
    m, n, c, k = "Memphis", "Nashville", "Chattanooga", "Knoxville"
    rankings = (
        [[[m], [n], [c], [k]]] * 42
        + [[[n], [c], [k], [m]]] * 26
        + [[[c], [k], [n], [m]]] * 15
        + [[[k], [c], [n], [m]]] * 17
    )
    assert ranked_pairs(rankings) == [[n], [c], [k], [m]]


def test_ranked_pairs_ties_and_deterministic_tie_break():
    # x and y split 1:1 (margin 0, never locked); both beat z 2:0 -> [[x, y], [z]]
    assert ranked_pairs([[["x"], ["y"], ["z"]], [["y"], ["x"], ["z"]]]) == [["x", "y"], ["z"]]
    # tied groups in the input contribute nothing between their members
    assert ranked_pairs([[["x", "y"], ["z"]]]) == [["x", "y"], ["z"]]
    # perfect 3-cycle, every margin 1 and 2 winning votes: broken by first appearance A, B, C:
    # lock A>B, B>C, skip C>A -> A, B, C; the same input always gives the same answer
    cycle = [[["A"], ["B"], ["C"]], [["B"], ["C"], ["A"]], [["C"], ["A"], ["B"]]]
    assert ranked_pairs(cycle) == [["A"], ["B"], ["C"]] == ranked_pairs(cycle)
    # an item only some rankings mention, and extra unranked items
    assert ranked_pairs([[["a"], ["b"]], [["c"], ["a"]]]) == [["c"], ["a"], ["b"]]
    assert ranked_pairs([], items=["p", "q"]) == [["p", "q"]]
    with pytest.raises(ValueError, match="twice"):
        ranked_pairs([[["a"], ["a"]]])


# --------------------------------------------------------------------------- Elo and Bradley–Terry
def test_elo_updates_by_hand():
    # equal ratings: E = 0.5, a wins: +32*0.5 = +16 -> 1016 / 984
    assert elo([("a", "b", 1.0)]) == {"a": 1016.0, "b": 984.0}
    # again: E_a = 1/(1+10^(-32/400)) = 1/(1+0.8317638) = 0.5459219; a += 32*(1-0.5459219) = 14.53050
    r = elo([("a", "b", 1.0), ("a", "b", "a")])
    assert r["a"] == pytest.approx(1030.5305, abs=1e-4) and r["b"] == pytest.approx(969.4695, abs=1e-4)
    # a tie between equals changes nothing
    assert elo([("a", "b", "tie")]) == {"a": 1000.0, "b": 1000.0}
    # win then tie: before the tie E_a = 0.5459219, delta = 32*(0.5-0.5459219) = -1.46950
    r = elo([("a", "b", 1.0), ("b", "a", 0.5)])
    assert r["a"] == pytest.approx(1014.5305, abs=1e-4) and r["b"] == pytest.approx(985.4695, abs=1e-4)
    assert elo([("a", "b", 1.0)], k=10.0, initial=1500.0) == {"a": 1505.0, "b": 1495.0}
    with pytest.raises(ValueError, match="outcome"):
        elo([("a", "b", "win")])


def test_bradley_terry_two_models_by_hand():
    # BT MLE for two models: P(a beats b) = p_hat = wins/n -> theta_a - theta_b = log(p/(1-p))
    # 7 wins, 3 losses: log(7/3) = 0.8473; the 1e-3 ridge moves it by ~1e-4
    comps = [("a", "b", 1.0)] * 7 + [("a", "b", 0.0)] * 3
    bt = bradley_terry(comps, n_bootstrap=0)
    assert bt["a"]["score"] - bt["b"]["score"] == pytest.approx(math.log(7 / 3), abs=1e-3)
    assert bt["a"]["score"] + bt["b"]["score"] == pytest.approx(0.0, abs=1e-9)  # mean-centred
    assert (bt["a"]["wins"], bt["a"]["losses"], bt["a"]["ties"], bt["a"]["n"]) == (7, 3, 0, 10)
    # ties count half: 6 wins, 2 ties, 2 losses -> p = (6 + 1) / 10 = 0.7, the same difference
    comps = [("a", "b", 1.0)] * 6 + [("a", "b", 0.5)] * 2 + [("b", "a", 1.0)] * 2
    bt = bradley_terry(comps, n_bootstrap=0, scale="elo")
    assert bt["a"]["score"] - bt["b"]["score"] == pytest.approx(math.log(7 / 3) * ELO_FACTOR, abs=0.5)
    assert (bt["a"]["score"] + bt["b"]["score"]) / 2 == pytest.approx(1000.0)
    assert bt["b"]["ties"] == 2


def test_bradley_terry_score_equations():
    # at the MLE each model's wins equal its expected wins: sum_j W_ij = sum_j n_ij sigmoid(t_i - t_j)
    rng = np.random.default_rng(1)
    w = rng.integers(1, 9, size=(4, 4)).astype(float)
    np.fill_diagonal(w, 0.0)
    theta = fit_bradley_terry(w, ridge=0.0)
    n = w + w.T
    expected = (n / (1 + np.exp(-(theta[:, None] - theta[None, :])))).sum(axis=1)
    assert expected == pytest.approx(w.sum(axis=1), abs=1e-4)
    assert win_matrix([("x", "y", 0.5)], ["x", "y"]).tolist() == [[0.0, 0.5], [0.5, 0.0]]


def test_bradley_terry_bootstrap_ci_covers_truth():
    truth = np.array([-1.0, -0.3, 0.4, 0.9])  # mean 0, like the fitted scores
    rng = np.random.default_rng(7)
    comps = []
    for _ in range(3000):
        i, j = rng.choice(4, size=2, replace=False)
        p = 1 / (1 + math.exp(-(truth[i] - truth[j])))
        comps.append((f"m{i}", f"m{j}", float(rng.random() < p)))
    bt = bradley_terry(comps, n_bootstrap=200, seed=0)
    for i, t in enumerate(truth):
        row = bt[f"m{i}"]
        assert row["ci_low"] < t < row["ci_high"], (i, row)
        assert row["ci_high"] - row["ci_low"] < 0.4
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
    assert bradley_terry(comps[:300], n_bootstrap=20, seed=3) == bradley_terry(
        comps[:300], n_bootstrap=20, seed=3
    )
    assert bradley_terry([]) == {}
