"""Simulated annotators: Bradley–Terry choices and Plackett–Luce rankings over a gold score."""

import math

import pytest

from prefloop.data.records import PreferencePair, RankedResponses
from prefloop.teachers.base import Teacher, order_to_ranks
from prefloop.teachers.simulated import SimulatedAnnotator, gold_agreement, sigmoid


class LookupGold:
    """A gold judge that reads the score from a table keyed by the completion text."""

    def __init__(self, table):
        self.table = table

    def __call__(self, prompts, completions):
        return [self.table[c] for c in completions]


GOLD = LookupGold({"a": 0.5, "b": 0.25, "c": 0.0, "d": 0.0})


def test_is_a_teacher():
    assert isinstance(SimulatedAnnotator(GOLD), Teacher)


def test_bradley_terry_probability_by_hand():
    ann = SimulatedAnnotator(GOLD, temperature=0.25)
    # (0.5 - 0) / 0.25 = 2  ->  1 / (1 + e^-2) = 0.8807970779778823
    assert ann.prob_prefers(0.5, 0.0) == pytest.approx(0.8807970779778823, abs=1e-12)
    assert ann.prob_prefers(0.0, 0.5) == pytest.approx(1 - 0.8807970779778823, abs=1e-12)
    assert ann.prob_prefers(0.3, 0.3) == 0.5
    assert sigmoid(-800.0) == 0.0 and sigmoid(800.0) == 1.0  # no overflow


def test_noiseless_annotator_follows_gold():
    ann = SimulatedAnnotator(GOLD, temperature=0.0, seed=0)
    for _ in range(20):
        pref = ann.compare("p", "c", "a")
        assert pref.which == "b" and pref.probability == 0.0
        pair = pref.to_pair("p", "c", "a")
        assert isinstance(pair, PreferencePair) and (pair.chosen, pair.rejected) == ("a", "c")
    # Ties in gold are ties in rank.
    assert ann.rank("p", ["c", "a", "d", "b"]) == [2, 0, 2, 1]


def test_compare_frequency_matches_bradley_terry():
    ann = SimulatedAnnotator(GOLD, temperature=0.25, seed=123)
    n = 20000
    wins = sum(ann.compare("p", "a", "c").which == "a" for _ in range(n))
    # P = sigma(2) = 0.8808; the standard error is sqrt(.88 * .12 / 20000) = 0.0023.
    assert abs(wins / n - 0.8807970779778823) < 0.01


def test_rank_of_two_is_bradley_terry():
    ann = SimulatedAnnotator(GOLD, temperature=0.25, seed=7)
    n = 20000
    first = sum(ann.rank("p", ["a", "c"]) == [0, 1] for _ in range(n))
    assert abs(first / n - 0.8807970779778823) < 0.01


def test_rank_of_three_is_plackett_luce():
    # Weights w = exp(g / tau) = [e^2, e^1, e^0] for a, b, c.
    # P(a > b > c) = e^2 / (e^2 + e + 1) * e / (e + 1) = 0.66524 * 0.73106 = 0.48633
    # P(c > b > a) = 1 / (e^2 + e + 1) * e / (e + e^2) = 0.09003 * 0.26894 = 0.02421
    w = [math.e**2, math.e, 1.0]
    p_abc = w[0] / sum(w) * w[1] / (w[1] + w[2])
    p_cba = w[2] / sum(w) * w[1] / (w[1] + w[0])
    assert p_abc == pytest.approx(0.48633, abs=1e-5) and p_cba == pytest.approx(0.02421, abs=1e-5)
    ann = SimulatedAnnotator(GOLD, temperature=0.25, seed=11)
    n = 20000
    ranks = [tuple(ann.rank("p", ["a", "b", "c"])) for _ in range(n)]
    assert abs(ranks.count((0, 1, 2)) / n - p_abc) < 0.015
    assert abs(ranks.count((2, 1, 0)) / n - p_cba) < 0.006


def test_same_seed_same_labels():
    r1 = SimulatedAnnotator(GOLD, 0.5, seed=3).rank_all(["p"] * 5, [["a", "b", "c"]] * 5)
    r2 = SimulatedAnnotator(GOLD, 0.5, seed=3).rank_all(["p"] * 5, [["a", "b", "c"]] * 5)
    assert [r.ranks for r in r1] == [r.ranks for r in r2]
    assert r1[0].meta["gold"] == [0.5, 0.25, 0.0]


def test_gold_agreement_by_hand():
    recs = [
        # gold order a > b > c; annotator swaps b and c: pairs (a,b) ok, (a,c) ok, (b,c) wrong
        RankedResponses("p", ["a", "b", "c"], [0, 2, 1], meta={"gold": [0.5, 0.25, 0.0]}),
        # a gold tie (c, d) is skipped; the annotator ties on (a, c) where gold differs: 1/2
        RankedResponses("p", ["a", "c", "d"], [0, 0, 1], meta={"gold": [0.5, 0.0, 0.0]}),
    ]
    # counted pairs: 3 + 2 = 5; agreements: 2 + (0.5 + 1) = 3.5
    assert gold_agreement(recs) == pytest.approx(3.5 / 5)


def test_agreement_rate_matches_model():
    ann = SimulatedAnnotator(GOLD, temperature=0.25, seed=5)
    recs = ann.rank_all(["p"] * 4000, [["a", "c"]] * 4000)
    assert ann.expected_agreement([r.meta["gold"] for r in recs]) == pytest.approx(0.8807970779778823)
    assert abs(gold_agreement(recs) - 0.8807970779778823) < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        SimulatedAnnotator(GOLD, temperature=-1.0)
    with pytest.raises(ValueError, match="at least one response"):
        SimulatedAnnotator(GOLD).rank("p", [])
    assert order_to_ranks([0.1, 0.9, 0.1]) == [1, 0, 1]
