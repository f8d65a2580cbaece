"""The statistics behind `prefloop eval`: win rates with intervals, length control, over-optimization fits.

Provenance and formulas
-----------------------
- Win rate of a policy against a reference on N prompts, judged pairwise: outcome o_i = 1 (win),
  0.5 (tie), 0 (loss); win rate = mean o_i. Its 95 % interval is the percentile bootstrap over
  prompts (resample the N outcomes with replacement, seeded).
- Length-controlled win rate (in the spirit of AlpacaEval 2's LC win rate, Dubois et al. 2024):
  fit P(win_i) = σ(θ + φ·z_i), z_i = tanh((ℓ_policy,i − ℓ_reference,i) / s), s = the standard
  deviation of the length differences, by maximum likelihood on the soft outcomes (ties = ½) with
  a small ridge on φ; the LC win rate is σ(θ): the predicted win rate at equal lengths.
  Deviation: AlpacaEval also has per-instruction difficulty terms; with one policy against one
  reference they are not identified, so there are none here.
- Best-of-N KL (Stiennon et al. 2020; Gao et al. 2022): KL(π_BoN ‖ π) = log n − (n − 1)/n.
- Reward over-optimization functional forms (Gao, Schulman & Hilton 2022), d = √KL:
      best-of-N: R(d) = d (α − β d)          peak at d* = α / (2β)
      RL:        R(d) = d (α − β log d)      peak at d* = exp(α/β − 1)
  Both are linear in (α, β) for known d, so they are fitted by least squares on
  [d, −d²] and [d, −d log d] respectively (no intercept: R(0) = 0 — the gold score is measured
  relative to the start policy's).

Shapes: lists of N floats in, Python floats out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit


@dataclass(frozen=True)
class WinRate:
    """A win rate with its bootstrap interval; ties count one half."""

    win_rate: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    n: int

    @property
    def tie_rate(self) -> float:
        return self.ties / self.n if self.n else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "tie_rate": self.tie_rate}


def outcomes_from_scores(policy: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Per-prompt outcome of policy vs reference from scalar judge scores: 1, ½ (equal) or 0."""
    if len(policy) != len(reference):
        raise ValueError(f"{len(policy)} policy scores but {len(reference)} reference scores")
    return [1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy, reference)]


def bootstrap_interval(
    values: Sequence[float], n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (resampled with replacement, seeded)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_bootstrap, x.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def win_rate(outcomes: Sequence[float], n_bootstrap: int = 2000, seed: int = 0) -> WinRate:
    """Win rate of per-prompt outcomes (1 / 0.5 / 0) with a 95 % percentile-bootstrap interval."""
    if not outcomes:
        raise ValueError("win_rate needs at least one outcome")
    bad = [o for o in outcomes if o not in (0.0, 0.5, 1.0)]
    if bad:
        raise ValueError(f"outcomes must be 1 (win), 0.5 (tie) or 0 (loss), got {bad[0]!r}")
    low, high = bootstrap_interval(outcomes, n_bootstrap, seed)
    return WinRate(
        win_rate=float(np.mean(outcomes)),
        ci_low=low,
        ci_high=high,
        wins=sum(1 for o in outcomes if o == 1.0),
        ties=sum(1 for o in outcomes if o == 0.5),
        losses=sum(1 for o in outcomes if o == 0.0),
        n=len(outcomes),
    )


def length_controlled_win_rate(
    outcomes: Sequence[float],
    policy_lengths: Sequence[float],
    reference_lengths: Sequence[float],
    ridge: float = 1e-3,
    iterations: int = 50,
) -> tuple[float, float]:
    """(LC win rate σ(θ), length coefficient φ) of P(win) = σ(θ + φ·tanh(Δℓ / s)); see the module notes."""
    y = np.asarray(outcomes, dtype=float)
    diff = np.asarray(policy_lengths, dtype=float) - np.asarray(reference_lengths, dtype=float)
    if not (y.size == diff.size == len(reference_lengths)) or y.size == 0:
        raise ValueError("outcomes and both length lists must have the same, non-zero length")
    scale = diff.std()
    z = np.tanh(diff / scale) if scale > 0 else np.zeros_like(diff)
    x = np.stack([np.ones_like(z), z], axis=1)
    penalty = np.diag([0.0, ridge])
    # The soft-label likelihood is unbounded in θ when every outcome is a win (or every one a loss);
    # a tiny ridge on θ keeps the Newton steps finite there without moving interior solutions.
    penalty[0, 0] = 1e-9
    w = np.zeros(2)
    for _ in range(iterations):
        p = expit(x @ w)
        grad = x.T @ (y - p) - penalty @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(expit(w[0])), float(w[1])


def best_of_n_kl(n: int) -> float:
    """Analytic KL(π_BoN ‖ π) = log n − (n − 1)/n for best-of-n sampling (0 for n = 1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


@dataclass(frozen=True)
class OveroptimizationFit:
    """Gao et al.'s functional form fitted to (d = √KL, gold score) points, and where it peaks."""

    form: str
    alpha: float
    beta: float
    d_peak: float
    kl_peak: float
    gold_peak: float
    peak_in_range: bool = False
    """Whether the fitted peak lies within the fitted points' d (a peak beyond them is an extrapolation)."""

    def predict(self, d: float | np.ndarray) -> float | np.ndarray:
        d = np.asarray(d, dtype=float)
        if self.form == "bon":
            return d * (self.alpha - self.beta * d)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > 0, d * (self.alpha - self.beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


def fit_overoptimization(d: Sequence[float], gold: Sequence[float], form: str) -> OveroptimizationFit:
    """Least-squares (α, β) of `form` "bon" (R = d(α − βd)) or "rl" (R = d(α − β log d)).

    `gold` is the gold score relative to the start policy's (R(0) = 0). The peak is at
    d* = α/(2β) (bon) or exp(α/β − 1) (rl) when β > 0, else at the largest d given;
    `peak_in_range` says whether the points reach it.
    """
    dd = np.asarray(d, dtype=float)
    r = np.asarray(gold, dtype=float)
    if dd.shape != r.shape or dd.size < 2:
        raise ValueError("need at least two (d, gold) points of equal count")
    if np.any(dd < 0):
        raise ValueError("d = sqrt(KL) must be >= 0")
    if form == "bon":
        x = np.stack([dd, -(dd**2)], axis=1)
    elif form == "rl":
        keep = dd > 0  # d log d → 0 as d → 0: the points at d = 0 carry no information
        dd, r = dd[keep], r[keep]
        x = np.stack([dd, -dd * np.log(dd)], axis=1)
    else:
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    (alpha, beta), *_ = np.linalg.lstsq(x, r, rcond=None)
    if beta > 0:
        d_peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    else:
        d_peak = float(dd.max())
    shape = d_peak if form == "bon" else math.log(d_peak) if d_peak > 0 else 0.0
    gold_peak = d_peak * (alpha - beta * shape)
    return OveroptimizationFit(
        form,
        float(alpha),
        float(beta),
        float(d_peak),
        float(d_peak**2),
        float(gold_peak),
        bool(beta > 0 and d_peak <= dd.max()),
    )


def least_squares_slope(values: Sequence[float]) -> float:
    """Slope of the least-squares line through (0, v_0), (1, v_1), ... (0 for fewer than 2 values)."""
    y = np.asarray(values, dtype=float)
    if y.size < 2:
        return 0.0
    x = np.arange(y.size, dtype=float)
    x -= x.mean()
    return float((x * (y - y.mean())).sum() / (x**2).sum())


class RewardHackingMonitor:
    """Warns when the proxy reward keeps rising while a held-out gold (or second) reward falls.

    Over the last `window` evaluations (at least 3), hacking is flagged when the least-squares
    slope of the proxy is > 0 and the gold's is < −`min_drop_per_eval` (gold units per
    evaluation). `update` returns the warning once per episode of hacking (it re-arms after an
    evaluation without it), so a long run does not repeat it every step.
    """

    def __init__(self, window: int = 5, min_drop_per_eval: float = 0.0):
        if window < 3:
            raise ValueError(f"window must be >= 3, got {window}")
        self.window, self.min_drop = window, min_drop_per_eval
        self.history: list[tuple[int, float, float]] = []
        self.flagged = False

    def update(self, step: int, proxy: float, gold: float) -> str | None:
        self.history.append((step, float(proxy), float(gold)))
        recent = self.history[-self.window :]
        if len(recent) < self.window:
            return None
        proxy_slope = least_squares_slope([p for _, p, _ in recent])
        gold_slope = least_squares_slope([g for _, _, g in recent])
        hacking = proxy_slope > 0 and gold_slope < -self.min_drop
        if not hacking:
            self.flagged = False
            return None
        if self.flagged:
            return None
        self.flagged = True
        first = recent[0][0]
        return (
            f"possible reward hacking at step {step}: over steps {first}..{step} the proxy reward rose "
            f"({proxy_slope:+.4f}/eval) while the gold score fell ({gold_slope:+.4f}/eval)"
        )

    def state_dict(self) -> dict[str, object]:
        return {"history": list(self.history), "flagged": self.flagged}

    def load_state_dict(self, state: dict[str, object]) -> None:
        history = state["history"]
        assert isinstance(history, list)
        self.history = [(int(s), float(p), float(g)) for s, p, g in history]
        self.flagged = bool(state["flagged"])
