"""Choosing which comparisons to ask for: uniform, ensemble disagreement, entropy, optimistic UCB.

Torch- and model-free: a selector sees, for N candidate pairs (a_i, b_i), the rewards an
ensemble of M reward models predicts, `rewards[m, i, 0]` for a_i and `rewards[m, i, 1]` for b_i
(shape [M, N, 2]; M = 1 is allowed except for disagreement), and returns a score per pair;
`select` takes the `budget` highest (ties broken at random). With

    p_mi = σ(r_mi0 − r_mi1)                 member m's P(a_i ≻ b_i)
    p̄_i  = mean_m p_mi

the selectors are

    uniform        u_i ~ U(0, 1)                          (random pairs: the baseline)
    disagreement   Var_m p_mi                             (bootstrap ensembles disagree: query by
                                                            committee, Seung et al. 1992)
    entropy        H(p̄_i) = −p̄ log p̄ − (1 − p̄) log(1 − p̄)   (the model is unsure which is better)
    ucb            max_{y ∈ {a_i, b_i}} mean_m r_my + c · std_m r_my
                                                           (optimism: pairs holding a reply that
                                                            might be the best; collection only)

Pessimistic (lower-bound) rewards for offline policy training belong to the reward ensembles
(`prefloop.rewards`), not here: collection is optimistic, training pessimistic.
`item_scores` scores items of K responses (the best pair), and `priorities` turns scores into
priorities in [0, 1] for the feedback server (PATCH /api/campaigns/{cid}/items/priority;
higher = asked first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SELECTORS = ("uniform", "disagreement", "entropy", "ucb")


def _check(rewards: np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 3 or r.shape[2] != 2:
        raise ValueError(f"rewards must have shape [members, pairs, 2], got {list(r.shape)}")
    return r


def pair_probabilities(rewards: np.ndarray) -> np.ndarray:
    """[M, N]: each member's P(a ≻ b) = σ(r_a − r_b)."""
    r = _check(rewards)
    # σ(x) = ½(1 + tanh(x/2)): no overflow warning for the |Δr| of hundreds that summed segment
    # rewards reach (Pendulum, HalfCheetah with 1000 labels), where 1/(1 + e^{-x}) overflows e^{-x}
    return 0.5 * (1.0 + np.tanh((r[:, :, 0] - r[:, :, 1]) / 2.0))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in nats, with H(0) = H(1) = 0."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def selector_scores(
    kind: str, rewards: np.ndarray, rng: np.random.Generator | None = None, ucb_c: float = 1.0
) -> np.ndarray:
    """Score per candidate pair, higher = ask first (formulas in the module docstring)."""
    r = _check(rewards)
    if kind == "uniform":
        return np.asarray((rng or np.random.default_rng()).random(r.shape[1]))
    if kind == "disagreement":
        if r.shape[0] < 2:
            raise ValueError("disagreement needs an ensemble of at least 2 reward models")
        return pair_probabilities(r).var(axis=0)
    if kind == "entropy":
        return binary_entropy(pair_probabilities(r).mean(axis=0))
    if kind == "ucb":
        spread = r.std(axis=0) if r.shape[0] > 1 else np.zeros_like(r[0])
        upper: np.ndarray = r.mean(axis=0) + ucb_c * spread
        return upper.max(axis=1)
    raise ValueError(f"unknown selector {kind!r}; known: {list(SELECTORS)}")


def select(
    kind: str,
    rewards: np.ndarray,
    budget: int,
    rng: np.random.Generator | None = None,
    exclude: Sequence[int] = (),
    ucb_c: float = 1.0,
) -> list[int]:
    """Indices of the `budget` best-scoring pairs (not in `exclude`), best first; random tie-break."""
    rng = rng or np.random.default_rng()
    scores = selector_scores(kind, rewards, rng, ucb_c)
    order = np.lexsort((rng.random(len(scores)), -scores))  # by score, ties at random
    banned = set(exclude)
    return [int(i) for i in order if int(i) not in banned][: max(budget, 0)]


def priorities(kind: str, rewards: np.ndarray, rng: np.random.Generator | None = None) -> list[float]:
    """Scores as item priorities in [0, 1] (rank-normalized: 1 = ask first)."""
    scores = selector_scores(kind, rewards, rng)
    n = len(scores)
    if n == 1:
        return [1.0]
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable")
    return [float(x) for x in ranks / (n - 1)]


def item_scores(
    kind: str, item_rewards: Sequence[np.ndarray], rng: np.random.Generator | None = None, ucb_c: float = 1.0
) -> list[float]:
    """One score per item of K_i responses: the best selector score over its C(K_i, 2) pairs.

    `item_rewards[i]` has shape [M, K_i] (each ensemble member's reward of each response)."""
    rng = rng or np.random.default_rng()
    out = []
    for r in item_rewards:
        r = np.asarray(r, dtype=float)
        k = r.shape[1]
        pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
        if not pairs:
            out.append(0.0)
            continue
        stacked = np.stack([np.stack([r[:, a], r[:, b]], axis=-1) for a, b in pairs], axis=1)  # [M, P, 2]
        out.append(float(selector_scores(kind, stacked, rng, ucb_c).max()))
    return out
