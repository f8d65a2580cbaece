"""Model ratings from pairwise comparisons: online Elo and Bradley–Terry with bootstrap CIs.

Provenance
----------
Elo — A. E. Elo, "The Rating of Chessplayers, Past and Present" (1978). For a game of a vs b
with score s_a (1 win, 0.5 tie, 0 loss):

    E_a = 1 / (1 + 10 ** ((R_b - R_a) / 400))
    R_a <- R_a + k * (s_a - E_a);   R_b <- R_b + k * ((1 - s_a) - (1 - E_a))

Ratings start at `initial` (1000). Online: the order of the comparisons matters, so the
leaderboard uses `elo_permuted`: the mean of the online ratings over `n_permutations` seeded
random orders of the comparisons (the approach of Chatbot Arena / FastChat's Elo notebook).
The comparisons are put in a canonical order before shuffling, so the result depends only on
the multiset of comparisons, never on the order they were submitted in.

Bradley–Terry — R. A. Bradley & M. E. Terry, "Rank analysis of incomplete block designs" (1952);
maximum likelihood as in Hunter, "MM algorithms for generalized Bradley–Terry models" (2004):

    P(i beats j) = sigmoid(theta_i - theta_j)
    W[i, j] = wins of i over j, a tie adding 0.5 to both W[i, j] and W[j, i]
    theta* = argmax  sum_{i,j} W[i, j] * log sigmoid(theta_i - theta_j)  -  ridge / 2 * |theta|^2

Shapes: M models -> theta [M], W [M, M].
Deviations: we maximise with damped Newton on the log-strengths (not Hunter's MM) and add a
tiny ridge penalty, which makes the optimum unique (the likelihood alone is invariant to adding
a constant) and finite for an undefeated model; scores are then mean-centred. With
`scale="elo"` a score is 1000 + theta * 400 / ln(10), so a 400-point gap means 10:1 odds as in
Elo. Confidence intervals: percentile bootstrap over comparisons (resampled with replacement,
seeded), refitting each resample.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
from scipy.special import expit, log_expit

ELO_FACTOR = 400.0 / math.log(10.0)

Comparison = tuple[Hashable, Hashable, object]


def outcome_score(outcome: object) -> float:
    """Score of the first model: 1 / 0 / 0.5 from a number or from "a" / "b" / "tie"."""
    if isinstance(outcome, str):
        table = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
        if outcome not in table:
            raise ValueError(
                f"comparison outcome must be 'a', 'b', 'tie' or a number in [0, 1], got {outcome!r}"
            )
        return table[outcome]
    score = float(outcome)  # type: ignore[arg-type]
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"comparison outcome must be in [0, 1], got {outcome!r}")
    return score


def elo(comparisons: Iterable[Comparison], k: float = 32.0, initial: float = 1000.0) -> dict[Hashable, float]:
    """Online Elo ratings after playing `comparisons` (model_a, model_b, outcome) in order."""
    ratings: dict[Hashable, float] = {}
    for a, b, outcome in comparisons:
        s_a = outcome_score(outcome)
        r_a = ratings.setdefault(a, initial)
        r_b = ratings.setdefault(b, initial)
        expected_a = 1.0 / (1.0 + 10.0 ** ((r_b - r_a) / 400.0))
        delta = k * (s_a - expected_a)
        ratings[a] = r_a + delta
        ratings[b] = r_b - delta  # zero-sum: k*((1-s_a)-(1-E_a)) = -delta
    return ratings


def elo_permuted(
    comparisons: Iterable[Comparison],
    k: float = 32.0,
    initial: float = 1000.0,
    n_permutations: int = 100,
    seed: int = 0,
) -> dict[Hashable, float]:
    """Order-independent Elo: mean of `elo` over `n_permutations` seeded shuffles of the
    comparisons, after sorting them canonically (each pair oriented by model name)."""
    canonical = []
    for a, b, outcome in comparisons:
        s_a = outcome_score(outcome)
        canonical.append((a, b, s_a) if str(a) <= str(b) else (b, a, 1.0 - s_a))
    canonical.sort(key=lambda c: (str(c[0]), str(c[1]), c[2]))
    if not canonical:
        return {}
    rng = np.random.default_rng(seed)
    totals: dict[Hashable, float] = {}
    for _ in range(n_permutations):
        order = rng.permutation(len(canonical))
        for model, rating in elo((canonical[i] for i in order), k=k, initial=initial).items():
            totals[model] = totals.get(model, 0.0) + rating
    return {model: total / n_permutations for model, total in totals.items()}


def _encode(
    comparisons: Sequence[Comparison], models: list[Hashable]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (a [N], b [N]) and first-model scores s [N] of the comparisons."""
    index = {m: i for i, m in enumerate(models)}
    a = np.array([index[c[0]] for c in comparisons], dtype=np.int64)
    b = np.array([index[c[1]] for c in comparisons], dtype=np.int64)
    s = np.array([outcome_score(c[2]) for c in comparisons], dtype=float)
    return a, b, s


def win_matrix(
    comparisons: Sequence[Comparison], models: list[Hashable], weights: np.ndarray | None = None
) -> np.ndarray:
    """W[i, j] = (weighted) wins of models[i] over models[j]; ties add half to both."""
    return _win_matrix(*_encode(comparisons, models), len(models), weights)


def _win_matrix(
    a: np.ndarray, b: np.ndarray, s: np.ndarray, m: int, weights: np.ndarray | None
) -> np.ndarray:
    weights = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    # bincount over flattened (row, col) cells: much faster than np.add.at for many comparisons
    w = np.bincount(a * m + b, weights=weights * s, minlength=m * m)
    w += np.bincount(b * m + a, weights=weights * (1.0 - s), minlength=m * m)
    return w.reshape(m, m)


def _objective(theta: np.ndarray, w: np.ndarray, ridge: float) -> float:
    """Negative penalised log-likelihood."""
    diff = theta[:, None] - theta[None, :]  # diff[i, j] = theta_i - theta_j
    return float(-(w * log_expit(diff)).sum() + 0.5 * ridge * theta @ theta)


def fit_bradley_terry(
    w: np.ndarray, ridge: float = 1e-3, tol: float = 1e-10, max_iter: int = 100
) -> np.ndarray:
    """Mean-centred log-strengths theta [M] maximising the ridge-penalised BT likelihood of W.

    Damped Newton: the objective is convex with gradient/Hessian
      g_i = -(sum_j W_ij (1 - p_ij) - sum_j W_ji (1 - p_ji)) + ridge * theta_i,  p_ij = sigmoid(theta_i - theta_j)
      H   = ridge * I + L,  L the graph Laplacian with edge weights (W_ij + W_ji) p_ij (1 - p_ij)
    A few iterations reach machine precision for the handful of models of a campaign.
    """
    m = w.shape[0]
    theta = np.zeros(m)
    n = w + w.T
    for _ in range(max_iter):
        diff = theta[:, None] - theta[None, :]
        p = expit(diff)
        g_mat = w * (1.0 - p)
        grad = -(g_mat.sum(axis=1) - g_mat.sum(axis=0)) + ridge * theta
        if np.abs(grad).max() < tol:
            break
        edge = n * p * (1.0 - p)
        hess = np.diag(edge.sum(axis=1)) - edge + ridge * np.eye(m)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]  # lstsq: H is singular when ridge = 0
        current, t = _objective(theta, w, ridge), 1.0
        while t > 1e-8 and _objective(theta - t * step, w, ridge) > current + 1e-12:
            t *= 0.5  # backtrack: a full Newton step can overshoot for near-undefeated models
        theta = theta - t * step
        if t * np.abs(step).max() < 1e-12:
            break
    return theta - theta.mean()


def to_scale(theta: np.ndarray, scale: str) -> np.ndarray:
    """Log-strengths -> reported scores ("log": unchanged; "elo": 1000 + theta * 400/ln 10)."""
    if scale == "log":
        return theta
    if scale == "elo":
        return 1000.0 + theta * ELO_FACTOR
    raise ValueError(f"scale must be 'log' or 'elo', got {scale!r}")


def bradley_terry(
    comparisons: Sequence[Comparison],
    n_bootstrap: int = 200,
    seed: int = 0,
    ridge: float = 1e-3,
    scale: str = "log",
    confidence: float = 0.95,
) -> dict[Hashable, dict[str, float]]:
    """Bradley–Terry scores with percentile-bootstrap confidence intervals.

    Returns {model: {"score", "ci_low", "ci_high", "wins", "losses", "ties", "n"}}; wins/losses/
    ties count comparisons involving the model. With n_bootstrap = 0 the CI is the point score.
    """
    comparisons = list(comparisons)
    if not comparisons:
        return {}
    models = list(dict.fromkeys(m for a, b, _ in comparisons for m in (a, b)))
    a, b, s = _encode(comparisons, models)
    theta = fit_bradley_terry(_win_matrix(a, b, s, len(models), None), ridge)
    boots = np.empty((n_bootstrap, len(models)))
    rng = np.random.default_rng(seed)
    for r in range(n_bootstrap):
        # a resample with replacement = a multiplicity count per comparison
        counts = np.bincount(rng.integers(0, len(comparisons), len(comparisons)), minlength=len(comparisons))
        boots[r] = fit_bradley_terry(_win_matrix(a, b, s, len(models), counts), ridge)
    tail = (1.0 - confidence) / 2.0 * 100.0
    if n_bootstrap:
        low, high = np.percentile(boots, [tail, 100.0 - tail], axis=0)
    else:
        low, high = theta, theta
    score, low, high = (to_scale(x, scale) for x in (theta, low, high))
    tally = _tally(comparisons, models)
    return {
        m: {"score": float(score[i]), "ci_low": float(low[i]), "ci_high": float(high[i]), **tally[m]}
        for i, m in enumerate(models)
    }


def _tally(comparisons: Sequence[Comparison], models: list[Hashable]) -> dict[Hashable, dict[str, int]]:
    """Per model: wins, losses, ties and total comparisons."""
    tally = {m: {"wins": 0, "losses": 0, "ties": 0, "n": 0} for m in models}
    for a, b, outcome in comparisons:
        s = outcome_score(outcome)
        for model, mine in ((a, s), (b, 1.0 - s)):
            t = tally[model]
            t["n"] += 1
            if mine > 0.5:
                t["wins"] += 1
            elif mine < 0.5:
                t["losses"] += 1
            else:
                t["ties"] += 1
    return tally
