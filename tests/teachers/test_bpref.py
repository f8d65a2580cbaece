"""B-Pref's simulated teachers: each noise model's statistics against its formula.

Frequencies are checked against exact binomial intervals (99.9 %, scipy), so a correct
teacher fails about once in a thousand runs per check, with the seeds fixed it never does,
and a wrong one (ε = 0.2 instead of 0.1, β ignored, ...) falls far outside.
"""

import math

import pytest
from scipy.stats import binom

from prefloop.feedback.quality import quality_report
from prefloop.teachers.base import Preference, Teacher, copeland_ranks, preference_from_probability
from prefloop.teachers.simulated import (
    BPREF_KINDS,
    SimulatedTeacher,
    TeacherPool,
    bpref_pool,
    bpref_teacher,
    gold_agreement,
    mean_abs_return,
    word_segments,
)


class LookupGold:
    """Gold score from a table keyed by text; unknown texts score 0."""

    def __init__(self, table):
        self.table = table

    def __call__(self, prompts, completions):
        assert len(prompts) == len(completions)
        return [self.table.get(c, 0.0) for c in completions]


GOLD = LookupGold({"a": 0.5, "b": 0.25, "c": 0.0, "d": 0.0, "low1": -0.4, "low2": -0.3})
N = 20_000


def within(count: int, n: int, p: float) -> bool:
    lo, hi = binom.interval(0.999, n, p)
    return lo <= count <= hi


def test_every_kind_is_a_teacher_with_its_published_parameters():
    teachers = {k: bpref_teacher(k, GOLD, mean_return=2.0) for k in BPREF_KINDS}
    for t in teachers.values():
        assert isinstance(t, Teacher)
    assert teachers["oracle"].beta == math.inf and teachers["oracle"].mistake == 0
    assert teachers["stoc"].beta == 1.0
    assert teachers["mistake"].mistake == 0.1
    assert teachers["myopic"].gamma == 0.9
    assert teachers["skip"].skip_threshold == pytest.approx(0.2)  # 0.1 x mean return 2.0
    assert teachers["equal"].equal_threshold == pytest.approx(0.2)
    assert teachers["mistake"].name == "sim:mistake-0.1"


def test_oracle_always_follows_gold():
    t = bpref_teacher("oracle", GOLD)
    prefs = [t.compare("p", "c", "a") for _ in range(200)]
    assert all(p.which == "b" and p.probability == 0.0 and p.strength == 1.0 for p in prefs)
    assert t.rank("p", ["c", "a", "d", "b"]) == [2, 0, 2, 1]


def test_stochastic_frequency_is_bradley_terry_with_rationality_beta():
    t = SimulatedTeacher(GOLD, beta=4.0, seed=1)
    p = 1 / (1 + math.exp(-4.0 * 0.5))  # σ(β Δ) = σ(2) = 0.880797
    wins = sum(t.compare("p", "a", "c").which == "a" for _ in range(N))
    assert within(wins, N, p)
    assert t.compare("p", "a", "c").probability == pytest.approx(0.8807970779778823)
    # β = 1 (B-Pref's stoc): σ(0.5) = 0.622459
    t1 = bpref_teacher("stoc", GOLD, seed=2)
    wins = sum(t1.compare("p", "a", "c").which == "a" for _ in range(N))
    assert within(wins, N, 1 / (1 + math.exp(-0.5)))


def test_mistake_flip_rate_within_binomial_interval():
    t = bpref_teacher("mistake", GOLD, seed=3)
    prefs = [t.compare("p", "a", "c") for _ in range(N)]
    flips = sum(p.which == "b" for p in prefs)
    assert within(flips, N, 0.1)
    assert not within(flips, N, 0.2) and not within(flips, N, 0.05)
    assert sum(bool(p.meta.get("flipped")) for p in prefs) == flips
    # the label distribution the teacher reports: P(verdict = a) = 0.9
    assert prefs[0].probability == pytest.approx(0.9) and prefs[0].strength == pytest.approx(0.8)


def test_skip_abstains_only_when_both_returns_are_below_the_threshold():
    t = SimulatedTeacher(GOLD, skip_threshold=-0.1)
    assert t.compare("p", "low1", "low2").skipped
    assert t.compare("p", "low1", "low2").to_pair("p", "low1", "low2") is None
    assert t.compare("p", "low1", "c").which == "b"  # max(-0.4, 0) = 0 >= -0.1: answered
    assert t.rank("p", ["low1", "low2"]) is None
    assert t.rank("p", ["low1", "c"]) == [1, 0]
    recs = t.rank_all(["p", "p"], [["low1", "low2"], ["a", "low2"]])
    assert recs[0].meta["skipped"] and recs[0].ranks is None and recs[1].ranks == [0, 1]
    assert gold_agreement(recs) == 1.0  # the skipped item is left out


def test_equal_calls_a_tie_within_the_threshold():
    t = SimulatedTeacher(GOLD, equal_threshold=0.3)
    tie = t.compare("p", "a", "b")  # |0.5 - 0.25| < 0.3
    assert tie.is_tie and tie.probability == 0.5 and tie.to_pair("p", "a", "b") is None
    assert t.compare("p", "a", "c").which == "a"  # |0.5 - 0| >= 0.3
    # ranks: a and b tie, c is 0.25 below b (< 0.3): ties with b too (chained)
    assert t.rank("p", ["a", "b", "c"]) == [0, 0, 0]
    assert SimulatedTeacher(GOLD, equal_threshold=0.2).rank("p", ["c", "b", "a"]) == [2, 1, 0]


def test_myopic_return_weights_later_segments_by_gamma():
    gold = LookupGold({"good": 1.0, "bad": -1.0})
    t = SimulatedTeacher(gold, gamma=0.9, segment_words=1)
    # R = Σ_t γ^(T−t) g_t: "good bad" = 0.9·1 + 1·(−1) = −0.1; "bad good" = 0.9·(−1) + 1 = 0.1
    assert t.returns(["p", "p"], ["good bad", "bad good"]) == pytest.approx([-0.1, 0.1])
    # three segments: 0.81·1 + 0.9·1 + 1·(−1) = 0.71
    assert t.returns(["p"], ["good good bad"]) == pytest.approx([0.71])
    assert t.compare("p", "good bad", "bad good").which == "b"  # the later good wins
    assert word_segments("a b c d e", 2) == ["a b", "c d", "e"]


def test_rank_with_mistakes_swaps_adjacent_pairs_at_rate_epsilon():
    t = SimulatedTeacher(GOLD, mistake=0.1, seed=4)
    n = 5000
    ranks = [tuple(t.rank("p", ["a", "b", "c"])) for _ in range(n)]
    # the walk from the top: no swap at either position (0.9²) keeps a > b > c
    assert within(ranks.count((0, 1, 2)), n, 0.81)


def test_rate_and_binary_statistics():
    t = SimulatedTeacher(GOLD, beta=4.0, seed=5)
    rates = [t.rate("p", "a") for _ in range(N)]
    # mean-zero Gumbel noise with scale 1/β: mean 0.5, sd π/(β√6) = 0.3206
    assert abs(sum(rates) / N - 0.5) < 4 * 0.3206 / math.sqrt(N)
    goods = sum(bool(t.judge_binary("p", "a")) for _ in range(N))
    assert within(goods, N, 1 / (1 + math.exp(-2.0)))  # σ(β (0.5 − 0))
    assert bpref_teacher("oracle", GOLD).judge_binary("p", "low1") is False


def test_same_seed_same_labels_and_bad_arguments():
    a = [SimulatedTeacher(GOLD, beta=2.0, mistake=0.1, seed=9).compare("p", "a", "b").which for _ in range(1)]
    b = [SimulatedTeacher(GOLD, beta=2.0, mistake=0.1, seed=9).compare("p", "a", "b").which for _ in range(1)]
    assert a == b
    for kwargs, match in [
        ({"beta": -1.0}, "beta"),
        ({"gamma": 0.0}, "gamma"),
        ({"mistake": 1.5}, "mistake"),
        ({"equal_threshold": -0.1}, "equal_threshold"),
    ]:
        with pytest.raises(ValueError, match=match):
            SimulatedTeacher(GOLD, **kwargs)
    with pytest.raises(ValueError, match="unknown B-Pref teacher"):
        bpref_teacher("lazy", GOLD)
    assert mean_abs_return(SimulatedTeacher(GOLD), ["p", "p"], ["a", "low1"]) == pytest.approx(0.45)


def test_preference_record_helpers():
    p = preference_from_probability(0.8, tie_margin=0.1, annotator="x")
    assert p.which == "a" and p.strength == pytest.approx(0.6) and p.meta == {"annotator": "x"}
    assert preference_from_probability(0.55, tie_margin=0.1).which == "tie"
    pair = p.to_pair("q", "A", "B")
    assert (pair.chosen, pair.rejected, pair.meta["p_chosen"]) == ("A", "B", 0.8)
    s = p.swapped()
    assert s.which == "b" and s.probability == pytest.approx(0.2)
    assert s.to_pair("q", "B", "A").chosen == "A"
    with pytest.raises(ValueError, match="which"):
        Preference("maybe")
    with pytest.raises(ValueError, match="probability"):
        Preference("a", 1.5)


def test_copeland_ranks_from_comparisons():
    assert copeland_ranks(bpref_teacher("oracle", GOLD), "p", ["c", "a", "b"]) == [2, 0, 1]
    assert copeland_ranks(SimulatedTeacher(GOLD, skip_threshold=5.0), "p", ["a", "b"]) is None


def _judgments(pool: TeacherPool, items):
    """Every pool member ranks every item, as the feedback store's judgment dicts."""
    out = []
    for item_id, (prompt, responses) in enumerate(items):
        rs = [{"id": 10 * item_id + i, "model": None, "text": r} for i, r in enumerate(responses)]
        for member in pool.members:
            ranks = member.rank(prompt, responses)
            groups = [[rs[i]["id"] for i in range(len(rs)) if ranks[i] == r] for r in sorted(set(ranks))]
            out.append(
                {
                    "judgment_id": len(out),
                    "item_id": item_id,
                    "annotator": member.name,
                    "is_gold": False,
                    "gold": None,
                    "prompt": prompt,
                    "responses": rs,
                    "payload": {"ranking": groups},
                }
            )
    return out


def test_pool_exercises_agreement_outlier_flags_and_consensus():
    table = {f"r{i}": i / 10 for i in range(8)}
    gold = LookupGold(table)
    pool = bpref_pool(gold, mean_return=0.35, beta=8.0, seed=0, kinds=("oracle", "stoc", "mistake", "myopic"))
    # a fifth member who ranks at random (β = 0): the one the report should flag
    pool = TeacherPool([*pool.members, SimulatedTeacher(gold, beta=0.0, seed=99, name="sim:random")])
    items = [("p", [f"r{(i * 3 + j) % 8}" for j in range(4)]) for i in range(40)]
    report = quality_report(_judgments(pool, items))
    by_name = {a["name"]: a for a in report["annotators"]}
    assert by_name["sim:random"]["flagged"]
    assert not by_name["sim:oracle"]["flagged"] and not by_name["sim:mistake-0.1"]["flagged"]
    taus = {n: a["kendall_tau_vs_consensus"] for n, a in by_name.items()}
    # measured: oracle 0.92, mistake 0.88, stoc (β = 8 on gaps of 0.1: σ(0.8) = 0.69) 0.62, random 0.09
    assert taus["sim:oracle"] > taus["sim:mistake-0.1"] > taus["sim:stoc-8"] > taus["sim:random"]
    # a pool answer names the member who gave it; all members answer over many calls
    names = {pool.compare("p", "r1", "r2").meta["annotator"] for _ in range(200)}
    assert names == {m.name for m in pool.members}
