"""Simulated teachers over a gold scorer: the B-Pref noise models, and a pool of them.

Lee, Smith, Dragan & Abbeel, "B-Pref: Benchmarking Preference-Based Reinforcement Learning"
(NeurIPS 2021 Datasets & Benchmarks), model an irrational human as a "SimTeacher" over the
true return R of each of two segments. Here a segment is a response, and R comes from any
gold scorer g(x, y) (a `RewardFn`, e.g. `prefloop.rewards.gold.SentimentGold`):

    myopic return   R(y) = Σ_{t=1..T} γ^(T−t) · g(x, y_t)   over T chunks y_t of `segment_words`
                    words (γ = 1, the default, uses the gold score of the whole response: R = g(x, y))
    skip            no label when max(R_a, R_b) < δ_skip
    equal           a tie (label ½) when |R_a − R_b| < δ_equal
    stochastic      P(a ≻ b) = σ(β (R_a − R_b)); β = ∞ picks the larger return (a fair coin on
                    an exact tie)
    mistake         the sampled verdict is flipped with probability ε

applied in that order. The published settings (B-Pref §4, one irrationality at a time, all
others at the oracle's values):

    oracle  β = ∞, γ = 1, ε = 0, δ_skip = δ_equal = 0     stoc    β = 1
    mistake ε = 0.1                                       myopic  γ = 0.9
    skip    δ_skip = 0.1 · mean return                    equal   δ_equal = 0.1 · mean return

B-Pref's "mean return" is the average true return of recent segments; `bpref_teacher` takes
it as an argument, and `mean_abs_return` measures it on sample responses (|R| here, because a
gold score such as VADER's can be negative — a deviation). β = 1 is in the gold's units:
on VADER's [−1, 1] scale it is very noisy (σ(0.5) = 0.62 for the largest typical gap), so
`bpref_pool` lets you set β.

`Preference.probability` is the teacher's label distribution, P(verdict = a) =
(1 − ε)·σ(βΔ) + ε·(1 − σ(βΔ)), so a soft-label learner sees what the teacher would say on average.

Rankings (`rank`), for K responses: a Plackett–Luce sample with weights exp(β R_i) (sort
R_i·β + Gumbel noise; for K = 2 this is the Bradley–Terry choice above); with ε > 0 each
adjacent pair of that order is then swapped with probability ε, walking from the top; with
δ_equal a response ties with the one just above it when their returns differ by less than
δ_equal; with δ_skip the item is skipped (None) when every return is below it.
`rate` returns R + (Gumbel − γ_Euler)/β (mean-zero noise of the Plackett–Luce model);
`judge_binary` says "good" with probability σ(β (R − binary_threshold)), then the mistake flip.

`SimulatedAnnotator(gold, temperature=τ)` is the stochastic teacher with β = 1/τ, kept with its
old name and arguments: the demo's labels are the same for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from prefloop.data.records import PromptText, RankedResponses
from prefloop.rewards.base import RewardFn
from prefloop.teachers.base import Preference, order_to_ranks

EULER_GAMMA = 0.5772156649015329
BPREF_KINDS = ("oracle", "stoc", "mistake", "skip", "equal", "myopic")
BPREF = {"beta": 1.0, "mistake": 0.1, "gamma": 0.9, "skip_eps": 0.1, "equal_eps": 0.1}


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def myopic_return(scores: Sequence[float], gamma: float = 1.0) -> float:
    """Σ_{t=1..T} γ^(T−t) · s_t: a sequence of per-chunk or per-step scores, the last weighted most.

    The text teacher applies it to word chunks of a response; control applies it to the per-step
    true rewards of a trajectory segment (`SimulatedTeacher.segment_return`)."""
    t_last = len(scores) - 1
    if gamma == 1.0:
        return float(sum(scores))
    return float(sum(gamma ** (t_last - t) * s for t, s in enumerate(scores)))


def word_segments(text: str, segment_words: int) -> list[str]:
    """`text` cut into consecutive chunks of `segment_words` words (at least one chunk)."""
    words = text.split()
    if not words:
        return [text]
    return [" ".join(words[i : i + segment_words]) for i in range(0, len(words), segment_words)]


class SimulatedTeacher:
    """A B-Pref SimTeacher over a gold scorer (a `Teacher`).

    Args:
        gold: the hidden judge, a `RewardFn` (prompts, completions) -> scores; None for a teacher
            that is only given returns (control segments: `segment_return`, `compare_returns`).
        beta: rationality β (math.inf = always the larger return).
        gamma: myopic discount γ in (0, 1]; < 1 scores `segment_words`-word chunks.
        mistake: ε, the probability of flipping the verdict.
        skip_threshold: δ_skip (None: never skip).
        equal_threshold: δ_equal (None: never call a tie).
        binary_threshold: the return above which `judge_binary` leans to "good".
        segment_words: chunk length of the myopic return.
        seed: seeds the teacher's own random generator (reproducible labels).
        name: who labelled, for meta and the feedback server (default "sim:<settings>").
    """

    rating_range = (-1.0, 1.0)  # the usual range of `rate` (gold units), for mapping onto a rating scale

    def __init__(
        self,
        gold: RewardFn | None,
        beta: float = math.inf,
        gamma: float = 1.0,
        mistake: float = 0.0,
        skip_threshold: float | None = None,
        equal_threshold: float | None = None,
        binary_threshold: float = 0.0,
        segment_words: int = 8,
        seed: int = 0,
        name: str | None = None,
    ):
        if not beta >= 0 or math.isnan(beta):
            raise ValueError(f"beta must be >= 0 (math.inf = noiseless), got {beta}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if not 0 <= mistake <= 1:
            raise ValueError(f"mistake must be a probability in [0, 1], got {mistake}")
        if equal_threshold is not None and equal_threshold < 0:
            raise ValueError(f"equal_threshold must be >= 0, got {equal_threshold}")
        if segment_words < 1:
            raise ValueError(f"segment_words must be >= 1, got {segment_words}")
        self.gold = gold
        # The noise scale τ = 1/β is what the formulas use (τ = 0: noiseless).
        self.temperature = 0.0 if math.isinf(beta) else (math.inf if beta == 0 else 1.0 / beta)
        self.gamma = float(gamma)
        self.mistake = float(mistake)
        self.skip_threshold = skip_threshold
        self.equal_threshold = equal_threshold
        self.binary_threshold = float(binary_threshold)
        self.segment_words = int(segment_words)
        self.rng = np.random.default_rng(seed)
        self.name = name or self._default_name()

    @property
    def beta(self) -> float:
        return math.inf if self.temperature == 0 else 1.0 / self.temperature

    def _default_name(self) -> str:
        parts = []
        if self.temperature != 0:
            parts.append(f"beta-{self.beta:g}")
        if self.mistake:
            parts.append(f"mistake-{self.mistake:g}")
        if self.gamma != 1:
            parts.append(f"myopic-{self.gamma:g}")
        if self.skip_threshold is not None:
            parts.append(f"skip-{self.skip_threshold:.3g}")
        if self.equal_threshold is not None:
            parts.append(f"equal-{self.equal_threshold:.3g}")
        return "sim:" + ("-".join(parts) or "oracle")

    # ------------------------------------------------------------ returns and probabilities

    def returns(self, prompts: Sequence[PromptText], responses: Sequence[str]) -> list[float]:
        """R(x, y) for each (prompt, response): the gold score, or its γ-discounted chunk sum."""
        if self.gold is None:
            raise ValueError(f"teacher {self.name} has no gold scorer: it can only compare given returns")
        if self.gamma == 1.0:
            return [float(g) for g in self.gold(list(prompts), list(responses))]
        chunks = [word_segments(r, self.segment_words) for r in responses]
        flat_p = [p for p, cs in zip(prompts, chunks) for _ in cs]
        flat_c = [c for cs in chunks for c in cs]
        scores = self.gold(flat_p, flat_c)
        out, start = [], 0
        for cs in chunks:
            seg = scores[start : start + len(cs)]
            start += len(cs)
            out.append(myopic_return(seg, self.gamma))
        return out

    def segment_return(self, rewards: Sequence[float]) -> float:
        """R of a trajectory segment from its per-step true rewards: Σ_t γ^(T−t) r_t (γ = 1: the sum)."""
        return myopic_return([float(r) for r in rewards], self.gamma)

    def prob_prefers(self, r_a: float, r_b: float) -> float:
        """σ(β (R_a − R_b)); with β = ∞: 1, 0, or ½ on an exact tie."""
        diff = r_a - r_b
        if self.temperature == 0:
            return 1.0 if diff > 0 else (0.0 if diff < 0 else 0.5)
        return sigmoid(diff / self.temperature)

    def _flip(self) -> bool:
        return self.mistake > 0 and bool(self.rng.random() < self.mistake)

    # ------------------------------------------------------------ the Teacher API

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference:
        r_a, r_b = self.returns([prompt, prompt], [a, b])
        meta = {"annotator": self.name, "return_a": r_a, "return_b": r_b}
        return self.compare_returns(r_a, r_b, meta)

    def compare_returns(
        self, r_a: float, r_b: float, meta: dict | None = None, exact_tie: bool = False
    ) -> Preference:
        """The noise models applied to two known returns (skip, equal, stochastic, mistake).

        ``exact_tie``: a noiseless teacher (β = ∞) calls exactly equal returns a tie instead of
        tossing a coin (control segments often have equal returns, e.g. CartPole's 1 per step)."""
        meta = {"annotator": self.name} if meta is None else meta
        if self.skip_threshold is not None and max(r_a, r_b) < self.skip_threshold:
            return Preference("skip", None, None, meta)
        if self.equal_threshold is not None and abs(r_a - r_b) < self.equal_threshold:
            return Preference("tie", 0.5, 0.0, meta)
        if exact_tie and self.temperature == 0 and r_a == r_b:
            return Preference("tie", 0.5, 0.0, meta)
        p = self.prob_prefers(r_a, r_b)
        a_wins = bool(self.rng.random() < p)
        if self._flip():
            a_wins = not a_wins
            meta = {**meta, "flipped": True}
        p_label = (1 - self.mistake) * p + self.mistake * (1 - p)
        return Preference("a" if a_wins else "b", p_label, abs(2 * p_label - 1), meta)

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
        if not responses:
            raise ValueError("rank needs at least one response")
        r = self.returns([prompt] * len(responses), list(responses))
        if self.skip_threshold is not None and max(r) < self.skip_threshold:
            return None
        return self.rank_scores(r)

    def rank_scores(self, gold: Sequence[float]) -> list[int]:
        """A noisy ranking of items with returns `gold` (Gumbel-perturbed utilities, then ε, δ_equal)."""
        values = np.asarray(gold, dtype=float)
        if self.temperature == 0:
            utilities = values
        else:
            utilities = values / self.temperature + self.rng.gumbel(size=values.shape)
        if self.mistake == 0 and self.equal_threshold is None:
            return order_to_ranks(utilities.tolist())
        order = sorted(range(len(gold)), key=lambda i: -utilities[i])
        for pos in range(len(order) - 1):
            if self._flip():
                order[pos], order[pos + 1] = order[pos + 1], order[pos]
        ranks, rank = [0] * len(order), 0
        for pos, i in enumerate(order):
            if pos > 0:
                above = order[pos - 1]
                tie = self.equal_threshold is not None and abs(gold[i] - gold[above]) < self.equal_threshold
                rank += 0 if tie else 1
            ranks[i] = rank
        return ranks

    def rate(self, prompt: PromptText, response: str) -> float:
        """R + (Gumbel − γ_Euler)/β: the return with the Plackett–Luce model's mean-zero noise."""
        (r,) = self.returns([prompt], [response])
        if self.temperature == 0:
            return r
        return r + self.temperature * (float(self.rng.gumbel()) - EULER_GAMMA)

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None:
        (r,) = self.returns([prompt], [response])
        good = bool(self.rng.random() < self.prob_prefers(r, self.binary_threshold))
        return (not good) if self._flip() else good

    # ------------------------------------------------------------ batches

    def rank_all(
        self, prompts: Sequence[PromptText], responses: Sequence[Sequence[str]]
    ) -> list[RankedResponses]:
        """Rank each prompt's responses; the returns go into meta["gold"] for auditing.

        The gold judge is called once over all responses (batched), then each prompt's
        ranking is drawn in order, so results depend only on the seed and the inputs.
        A skipped item keeps ranks None and meta["skipped"] = True."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
        flat_prompts = [p for p, rs in zip(prompts, responses) for _ in rs]
        flat_responses = [r for rs in responses for r in rs]
        flat_gold = self.returns(flat_prompts, flat_responses) if flat_responses else []
        out, start = [], 0
        for prompt, rs in zip(prompts, responses):
            gold = [float(g) for g in flat_gold[start : start + len(rs)]]
            start += len(rs)
            meta = {"gold": gold}
            if self.skip_threshold is not None and gold and max(gold) < self.skip_threshold:
                out.append(RankedResponses(prompt, list(rs), None, meta={**meta, "skipped": True}))
                continue
            out.append(
                RankedResponses(prompt=prompt, responses=list(rs), ranks=self.rank_scores(gold), meta=meta)
            )
        return out

    def expected_agreement(self, gold_lists: Sequence[Sequence[float]]) -> float:
        """Model agreement with the gold order: mean σ(β|ΔR|) over pairs with ΔR ≠ 0 (no ε, δ)."""
        probs = [
            self.prob_prefers(abs(a - b), 0.0)
            for g in gold_lists
            for i, a in enumerate(g)
            for b in g[i + 1 :]
            if a != b
        ]
        return float(np.mean(probs)) if probs else float("nan")


class SimulatedAnnotator(SimulatedTeacher):
    """The demo's annotator: Bradley–Terry / Plackett–Luce noise at temperature τ = 1/β.

    Args:
        gold: the hidden judge, a `RewardFn`.
        temperature: τ, the noise scale in gold-score units (0 = noiseless).
        seed: seeds the annotator's random generator.
    """

    def __init__(self, gold: RewardFn, temperature: float = 0.25, seed: int = 0, name: str | None = None):
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        super().__init__(gold, beta=math.inf, seed=seed, name=name or f"sim:tau-{temperature:g}")
        self.temperature = float(temperature)  # exactly τ, so utilities are gold / τ as before


def mean_abs_return(
    teacher: SimulatedTeacher, prompts: Sequence[PromptText], responses: Sequence[str]
) -> float:
    """Mean |R| over sample responses: B-Pref's scale for δ_skip and δ_equal."""
    r = teacher.returns(prompts, responses)
    return float(np.mean(np.abs(r))) if r else 0.0


def bpref_teacher(
    kind: str, gold: RewardFn | None, mean_return: float = 1.0, beta: float | None = None, seed: int = 0
) -> SimulatedTeacher:
    """One of B-Pref's six teachers with its published parameters (see the module docstring).

    `mean_return` scales δ_skip and δ_equal (0.1 · mean return); `beta` overrides the stoc
    teacher's β = 1 (for a gold whose units are not B-Pref's)."""
    if kind not in BPREF_KINDS:
        raise ValueError(f"unknown B-Pref teacher {kind!r}; known: {list(BPREF_KINDS)}")
    b = BPREF["beta"] if beta is None else beta
    settings: dict[str, dict] = {
        "oracle": {},
        "stoc": {"beta": b},
        "mistake": {"mistake": BPREF["mistake"]},
        "skip": {"skip_threshold": BPREF["skip_eps"] * mean_return},
        "equal": {"equal_threshold": BPREF["equal_eps"] * mean_return},
        "myopic": {"gamma": BPREF["gamma"]},
    }
    names = {
        "oracle": "sim:oracle",
        "stoc": f"sim:stoc-{b:g}",
        "mistake": f"sim:mistake-{BPREF['mistake']:g}",
        "skip": f"sim:skip-{BPREF['skip_eps']:g}",
        "equal": f"sim:equal-{BPREF['equal_eps']:g}",
        "myopic": f"sim:myopic-{BPREF['gamma']:g}",
    }
    return SimulatedTeacher(gold, seed=seed, name=names[kind], **settings[kind])


class TeacherPool:
    """Several teachers; each call is answered by one member drawn uniformly at random.

    `meta["annotator"]` names the member that answered, so agreement, outlier flags and
    consensus can be computed per annotator. `members` is the list itself, for labelling
    every item by everyone."""

    def __init__(self, members: Sequence, seed: int = 0, name: str = "sim:pool"):
        if not members:
            raise ValueError("a pool needs at least one teacher")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"pool members need distinct names, got {names}")
        self.members = list(members)
        self.name = name
        self.rng = np.random.default_rng(seed)

    def _pick(self):
        return self.members[int(self.rng.integers(len(self.members)))]

    def _ask(self, method: str, *args):
        member = self._pick()
        return getattr(member, method)(*args)

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference:
        member = self._pick()
        pref = member.compare(prompt, a, b)
        return Preference(
            pref.which, pref.probability, pref.strength, {**pref.meta, "annotator": member.name}
        )

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
        return self._ask("rank", prompt, responses)

    def rate(self, prompt: PromptText, response: str) -> float:
        return self._ask("rate", prompt, response)

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None:
        return self._ask("judge_binary", prompt, response)


def bpref_pool(
    gold: RewardFn,
    mean_return: float = 1.0,
    beta: float | None = None,
    seed: int = 0,
    kinds: Sequence[str] = BPREF_KINDS,
    make: Callable[..., SimulatedTeacher] = bpref_teacher,
) -> TeacherPool:
    """A pool of B-Pref's teachers (each seeded differently), one per kind."""
    return TeacherPool(
        [make(k, gold, mean_return=mean_return, beta=beta, seed=seed + 1 + i) for i, k in enumerate(kinds)],
        seed=seed,
    )


def gold_agreement(records: Sequence[RankedResponses]) -> float:
    """Fraction of response pairs whose annotated order matches the gold order.

    Uses `meta["gold"]` (as written by `SimulatedTeacher.rank_all`). A pair counts when
    the gold scores differ; an annotator tie on such a pair counts as half agreement.
    Skipped records (ranks None with meta["skipped"]) are left out. NaN when no pair qualifies.
    """
    total, agree = 0, 0.0
    for rec in records:
        gold = rec.meta.get("gold")
        if gold is None:
            raise ValueError("gold_agreement needs records with meta['gold'] (see rank_all)")
        if rec.meta.get("skipped"):
            continue
        for i in range(len(rec.responses)):
            for j in range(i + 1, len(rec.responses)):
                if gold[i] == gold[j]:
                    continue
                total += 1
                ri, rj = rec.rank_of(i), rec.rank_of(j)
                if ri == rj:
                    agree += 0.5
                elif (ri < rj) == (gold[i] > gold[j]):
                    agree += 1.0
    return agree / total if total else float("nan")
