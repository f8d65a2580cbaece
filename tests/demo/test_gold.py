"""The gold judge: VADER sentiment plus the documented length rules."""

import pytest

from prefloop.rewards.base import RewardFn
from prefloop.rewards.gold import SentimentGold, gold_judge


@pytest.fixture(scope="module")
def gold():
    return SentimentGold(max_words=60, overlong_penalty=0.5, empty_penalty=1.0)


def test_is_a_reward_fn(gold):
    assert isinstance(gold, RewardFn)


def test_warm_reply_beats_cold_reply(gold):
    warm = "I'm so sorry, that sounds hard. You'll do great next time, I believe in you!"
    cold = "That is terrible and awful. You failed."
    scores = gold(["p", "p"], [warm, cold])
    assert scores[0] > 0.5 > 0 > scores[1]


def test_lexicon_loads_offline_and_matches_vader(gold):
    # The lexicon ships in the wheel: the compound of a plain neutral word is exactly 0.
    assert gold.sentiment("table") == 0.0
    assert gold.score("table") == 0.0


def test_empty_reply_scores_minus_empty_penalty(gold):
    assert gold.score("") == -1.0
    assert gold.score("   \n ") == -1.0


def test_overlong_penalty_ramp(gold):
    # Neutral words: compound 0, so the score is minus the penalty.
    # 90 words: 0.5 * (90 - 60) / 60 = 0.25; 120 words and beyond: 0.5 (the ramp saturates).
    assert gold.score(" ".join(["table"] * 60)) == 0.0
    assert gold.score(" ".join(["table"] * 90)) == pytest.approx(-0.25)
    assert gold.score(" ".join(["table"] * 120)) == pytest.approx(-0.5)
    assert gold.score(" ".join(["table"] * 500)) == pytest.approx(-0.5)


def test_no_length_rule():
    assert SentimentGold(max_words=None).score(" ".join(["table"] * 500)) == 0.0


def test_length_mismatch_and_registry():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        SentimentGold()(["a", "b"], ["x"])
    assert isinstance(gold_judge("sentiment"), SentimentGold)
    with pytest.raises(ValueError, match="unknown gold judge"):
        gold_judge("nope")
