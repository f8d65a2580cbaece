"""quality.py on hand-built judgment dicts (the shape store.campaign_judgments produces)."""

from __future__ import annotations

import json

import pytest

from prefloop.feedback import quality
from prefloop.feedback.ratings import bradley_terry, elo, elo_permuted

RESPONSES_1 = [
    {"id": 1, "model": "m1", "text": "one"},
    {"id": 2, "model": "m2", "text": "two"},
    {"id": 3, "model": "m3", "text": "three"},
]
RESPONSES_2 = [
    {"id": 4, "model": "m1", "text": "four"},
    {"id": 5, "model": "m2", "text": "five"},
    {"id": 6, "model": "m3", "text": "six"},
]


def judgment(jid, item, who, responses, payload, gold=None):
    return {
        "judgment_id": jid,
        "item_id": item,
        "annotator": who,
        "is_gold": gold is not None,
        "gold": gold,
        "prompt": f"prompt {item}",
        "responses": responses,
        "payload": payload,
    }


def four_annotators():
    """Items 1 and 2: annotators A, B, C rank best->worst m1, m2, m3; D reverses it."""
    out, jid = [], 0
    for item, resp in ((1, RESPONSES_1), (2, RESPONSES_2)):
        ids = [r["id"] for r in resp]
        for who in "ABCD":
            order = ids if who != "D" else ids[::-1]
            jid += 1
            out.append(judgment(jid, item, who, resp, {"ranking": [[i] for i in order]}))
    return out


def test_quality_report_by_hand():
    report = quality.quality_report(four_annotators())
    assert report["n_judgments"] == 8 and report["n_items"] == 2
    by = {a["name"]: a for a in report["annotators"]}
    # leave-one-out consensus: for A the others B, C, D give 1>2 by 2:1 etc. -> [1,2,3] -> tau 1;
    # for D the others A, B, C give [1,2,3] while D says [3,2,1] -> tau -1
    assert by["A"]["kendall_tau_vs_consensus"] == pytest.approx(1.0)
    assert by["D"]["kendall_tau_vs_consensus"] == pytest.approx(-1.0)
    # pairs: per pair A, B, C agree (3 of the 6 annotator pairs) -> 0.5 everywhere;
    # A agrees with B and C, not D -> 2/3; D agrees with nobody -> 0
    assert report["percent_agreement_pairs"] == pytest.approx(0.5)
    assert by["A"]["pair_agreement"] == pytest.approx(2 / 3) and by["D"]["pair_agreement"] == 0.0
    # ordinal alpha on mid-ranks: per item, unit resp1 = (1,1,1,3), resp2 = (2,2,2,2), resp3 = (3,3,3,1)
    # weight 1/3 per ordered pair -> over both items o11 = 4, o13 = o31 = 4, o22 = 8, o33 = 4
    # n_1 = n_2 = n_3 = 8, n = 24; d2(1,2) = d2(2,3) = (16-8)^2 = 64, d2(1,3) = (24-8)^2 = 256
    # observed = 8*256 = 2048; expected = 2*64*(64+64+256) = 49152 -> alpha = 1 - 23*2048/49152 = 1/24
    assert report["krippendorff_alpha_rankings"] == pytest.approx(1 / 24)
    assert report["krippendorff_alpha_ratings"] is None  # no ratings: undefined -> None (valid JSON)
    # taus {1, 1, 1, -1}: median 1, MAD 0 -> floor 0.1 -> cutoff 0.8: only D
    assert [a["name"] for a in report["annotators"] if a["flagged"]] == ["D"]
    assert "agreement" in by["D"]["reason"]
    json.dumps(report)  # JSON-ready


def test_gold_accuracy_pairwise_and_ranking():
    gold_resp = [{"id": 7, "model": "m1", "text": "good"}, {"id": 8, "model": "m2", "text": "bad"}]
    js = [
        # gold {"chosen": 0} = response 7 beats 8: A right (1), B tie (0.5), D wrong (0)
        judgment(1, 3, "A", gold_resp, {"pairwise": {"a": 7, "b": 8, "choice": "a"}}, gold={"chosen": 0}),
        judgment(2, 3, "B", gold_resp, {"pairwise": {"a": 8, "b": 7, "choice": "tie"}}, gold={"chosen": 0}),
        judgment(
            3,
            3,
            "D",
            gold_resp,
            {"pairwise": {"a": 8, "b": 7, "choice": "a", "strength": "better"}},
            gold={"chosen": 0},
        ),
        # gold ranking [[0], [1, 2]]: pairs 1>2 and 1>3 (2~3 unscored); D says 2 > 1 > 3 -> 1 of 2 -> 0.5
        judgment(4, 1, "D", RESPONSES_1, {"ranking": [[2], [1], [3]]}, gold={"ranking": [[0], [1, 2]]}),
        judgment(5, 1, "A", RESPONSES_1, {"ranking": [[1], [2, 3]]}),  # not gold: no score
    ]
    assert [quality.gold_score(j) for j in js] == [1.0, 0.5, 0.0, 0.5, None]
    report = quality.quality_report(js)
    by = {a["name"]: a for a in report["annotators"]}
    assert by["A"]["gold_accuracy"] == 1.0 and by["A"]["n_gold"] == 1 and by["A"]["n"] == 2
    assert by["D"]["gold_accuracy"] == pytest.approx(0.25)  # mean of 0 and 0.5
    assert by["D"]["flagged"] and "gold accuracy 0.25" in by["D"]["reason"]
    assert by["B"]["flagged"] and not by["A"]["flagged"]  # 0.5 < 0.6 threshold


def test_ratings_alpha_with_string_keys():
    # JSON turns rating keys into strings; units (item, response): (5,5) (3,2) (1,1)
    # o_55 = 2, o_23 = o_32 = 1, o_11 = 2 -> n_1 = 2, n_2 = 1, n_3 = 1, n_5 = 2, n = 6
    # observed = 2 * 1 = 2; expected = 2 * (2*1*1 + 2*1*4 + 2*2*16 + 1*1*1 + 1*2*9 + 1*2*4) = 202
    # alpha = 1 - 5 * 2 / 202
    js = [
        judgment(1, 1, "A", RESPONSES_1, {"ratings": {"1": 5, "2": 3, "3": 1}}),
        judgment(2, 1, "B", RESPONSES_1, {"ratings": {"1": 5, "2": 2, "3": 1}}),
    ]
    assert quality.quality_report(js)["krippendorff_alpha_ratings"] == pytest.approx(1 - 10 / 202)


def test_consensus_ranking_mixes_rankings_and_pairwise():
    js = four_annotators()[:4]  # item 1: A, B, C say 1>2>3, D says 3>2>1
    assert quality.consensus_ranking(js) == [[1], [2], [3]]
    # pairwise votes for 3 over 1 (x3) plus one ranking 1 > 2 > 3:
    # P(3>1) = 3 vs 1 -> margin 2 locked first; 1>2 (1) and 2>3 (1) by first appearance: 1>2 locked,
    # 2>3 would close 3>1>2>3 -> skipped -> 3, 1, 2
    pw = [
        judgment(10 + i, 1, w, RESPONSES_1, {"pairwise": {"a": 3, "b": 1, "choice": "a"}})
        for i, w in enumerate("XYZ")
    ]
    assert quality.consensus_ranking([js[0], *pw]) == [[3], [1], [2]]
    # ties and both_bad make groups; nothing judged -> []
    tie = judgment(20, 1, "A", RESPONSES_1, {"pairwise": {"a": 1, "b": 2, "choice": "both_bad"}})
    assert quality.consensus_ranking([tie]) == [[1, 2]]
    assert quality.consensus_ranking([judgment(21, 1, "A", RESPONSES_1, {"critique": "meh"})]) == []


def test_pair_outcomes_pairwise_overrides_ranking():
    j = judgment(
        1, 1, "A", RESPONSES_1, {"ranking": [[1], [2], [3]], "pairwise": {"a": 2, "b": 1, "choice": "a"}}
    )
    # sorted pair ("1","2"): ranking says first (1) wins, explicit choice says 2 wins -> "second"
    assert quality.pair_outcomes(j) == {("1", "2"): "second", ("1", "3"): "first", ("2", "3"): "first"}


def test_leaderboard_from_pairwise_and_rankings():
    js = [
        # pairwise m1 (resp 1) beats m2 (resp 2)
        judgment(1, 1, "A", RESPONSES_1, {"pairwise": {"a": 1, "b": 2, "choice": "a", "strength": "better"}}),
        # ranking [[6], [4, 5]] = m3 > m1 ~ m2: comparisons (m1,m2,tie), (m1,m3,0), (m2,m3,0)
        judgment(2, 2, "B", RESPONSES_2, {"ranking": [[6], [4, 5]]}),
        # same model on both sides never counts
        judgment(
            3,
            3,
            "C",
            [{"id": 9, "model": "m1", "text": "x"}, {"id": 10, "model": "m1", "text": "y"}],
            {"pairwise": {"a": 9, "b": 10, "choice": "a"}},
        ),
    ]
    comps = quality.model_comparisons(js)
    assert comps == [("m1", "m2", 1.0), ("m1", "m2", 0.5), ("m1", "m3", 0.0), ("m2", "m3", 0.0)]
    board = quality.leaderboard(js, n_bootstrap=20, seed=0)
    assert board["n_comparisons"] == 4
    # Elo by hand for the first game: 1016 / 984; the board's Elo is the seeded permutation mean
    assert elo(comps[:1]) == {"m1": 1016.0, "m2": 984.0}
    assert {e["model"]: e["rating"] for e in board["elo"]} == pytest.approx(elo_permuted(comps, seed=0))
    bt = {r["model"]: r for r in board["bradley_terry"]}
    assert board["bradley_terry"][0]["model"] == "m3"  # won both its games
    assert (bt["m1"]["wins"], bt["m1"]["losses"], bt["m1"]["ties"], bt["m1"]["n"]) == (1, 1, 1, 3)
    assert sum(r["score"] for r in board["bradley_terry"]) / 3 == pytest.approx(1000.0)
    assert all(r["ci_low"] <= r["score"] <= r["ci_high"] for r in board["bradley_terry"])
    json.dumps(board)


def test_leaderboard_png_and_text_report():
    js = four_annotators()
    png = quality.leaderboard_png(quality.leaderboard(js, n_bootstrap=10))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert quality.leaderboard_png({"elo": [], "bradley_terry": [], "n_comparisons": 0})[:4] == b"\x89PNG"
    report = quality.campaign_report(js, n_bootstrap=10)
    text = quality.report_text(report)
    assert "Krippendorff alpha (rankings, ordinal): 0.042" in text
    assert "D" in text and "m1" in text
    assert json.loads(quality.report_json(report))["quality"]["n_items"] == 2


def test_empty_campaign_is_valid_json():
    report = quality.quality_report([])
    assert report == {
        "n_judgments": 0,
        "n_items": 0,
        "annotators": [],
        "krippendorff_alpha_ratings": None,
        "krippendorff_alpha_rankings": None,
        "percent_agreement_pairs": None,
    }
    assert quality.leaderboard([]) == {"elo": [], "bradley_terry": [], "n_comparisons": 0}
    assert quality.consensus_ranking([]) == []
    assert "0 comparisons" in quality.report_text(quality.campaign_report([]))


def test_elo_does_not_depend_on_submission_order():
    # x beats y 6 times, then y beats x 4 times. Online Elo (K=32) weighs the recent games most:
    # played in this order y ends ahead; reversed, x does. Bradley-Terry (6 of 10 to x) puts x first.
    comps = [("x", "y", 1.0)] * 6 + [("x", "y", 0.0)] * 4
    forward, backward = elo(comps), elo(comps[::-1])
    assert forward["y"] > forward["x"] and backward["x"] > backward["y"]  # the defect
    bt = bradley_terry(comps, n_bootstrap=0, scale="elo")
    assert bt["x"]["score"] > bt["y"]["score"]
    # the permutation mean: exactly the same numbers whatever the order (and orientation) of the
    # comparisons, and the same order of models as Bradley-Terry
    flipped = [("y", "x", 1.0 - s) for _, _, s in comps]
    means = [elo_permuted(c, seed=3) for c in (comps, comps[::-1], flipped, comps[3:] + comps[:3])]
    assert all(m == means[0] for m in means)
    assert means[0]["x"] > means[0]["y"]
    # zero-sum updates: the mean rating stays at the initial 1000
    assert (means[0]["x"] + means[0]["y"]) / 2 == pytest.approx(1000.0)
    # two games won and lost: the two possible orders end at (998.53, 1001.47) and mirrored
    # (E_a after a first win = 1 / (1 + 10^(-32/400)) = 0.54592; 1016 - 32 * 0.54592 = 998.531),
    # so any mix of the two orders averages to 1000 +- 1.469 and the pair sums to 2000
    two = elo_permuted([("a", "b", 1.0), ("a", "b", 0.0)], n_permutations=1)
    assert sorted(two.values()) == pytest.approx([998.531, 1001.469], abs=1e-3)
    assert elo_permuted([]) == {}
