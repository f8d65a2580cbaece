"""Programmatic gold judges: the hidden "true" preference of a task, for measuring real gains.

A gold judge stands in for what people actually want, so a demo or benchmark can say
whether training improved a policy without humans in the loop. Training never sees it
directly: annotators are simulated from it with noise (`prefloop.teachers.simulated`), and
only their labels reach the reward model and DPO.

`SentimentGold` — the built-in task "warm, positive, helpful short replies":

    gold(x, y) = compound(y) - empty_penalty * [y is blank] - overlong_penalty * over(y)

    compound(y)  VADER's compound sentiment of the reply, in [-1, 1] (Hutto & Gilbert,
                 "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social
                 Media Text", ICWSM 2014): a lexicon of valence scores with rules for
                 negation, intensifiers, "but" and punctuation, normalised by x/sqrt(x²+15).
    over(y)      min(1, (words(y) - max_words) / max_words) when the reply has more than
                 `max_words` words, else 0: a linear ramp so that padding a reply with more
                 positive words stops paying once it is far too long.

A blank reply scores `-empty_penalty` (-1.0 by default: its compound sentiment is 0). The prompt is not used by the sentiment term: the task's
preference is about the reply alone; the argument is there so a gold judge is a `RewardFn`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefloop.data.records import PromptText


class SentimentGold:
    """VADER compound sentiment of a reply, with optional length rules (a `RewardFn`).

    Args:
        max_words: replies longer than this many words are penalised (None: no length rule).
        overlong_penalty: the penalty at twice `max_words` words and beyond (linear ramp).
        empty_penalty: subtracted from a blank reply (whose compound sentiment is 0).
    """

    def __init__(self, max_words: int | None = 60, overlong_penalty: float = 0.5, empty_penalty: float = 1.0):
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be positive or None, got {max_words}")
        self.max_words = max_words
        self.overlong_penalty = overlong_penalty
        self.empty_penalty = empty_penalty
        self._analyzer = _vader()

    def sentiment(self, text: str) -> float:
        """VADER's compound score of `text`, in [-1, 1]."""
        return float(self._analyzer.polarity_scores(text)["compound"])

    def penalty(self, text: str) -> float:
        """The length/format penalty of `text` (>= 0)."""
        words = len(text.split())
        if words == 0:
            return self.empty_penalty
        if self.max_words is not None and words > self.max_words:
            return self.overlong_penalty * min(1.0, (words - self.max_words) / self.max_words)
        return 0.0

    def score(self, text: str) -> float:
        """The gold score of one reply."""
        return self.sentiment(text) - self.penalty(text)

    def __call__(self, prompts: Sequence[PromptText], completions: Sequence[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        return [self.score(c) for c in completions]


def _vader():
    """VADER's analyzer; its lexicon ships inside the vaderSentiment wheel (no download)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:  # pragma: no cover - a declared dependency
        raise ImportError(
            "the gold judge needs the `vaderSentiment` package: pip install vaderSentiment"
        ) from None
    return SentimentIntensityAnalyzer()


GOLD_JUDGES = {"sentiment": SentimentGold}


def gold_judge(name: str = "sentiment", **kwargs) -> SentimentGold:
    """A gold judge by name (the registry has one task today: "sentiment")."""
    if name not in GOLD_JUDGES:
        raise ValueError(f"unknown gold judge {name!r}; known: {sorted(GOLD_JUDGES)}")
    return GOLD_JUDGES[name](**kwargs)
