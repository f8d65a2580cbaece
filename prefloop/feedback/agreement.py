"""Inter-annotator agreement: Krippendorff's alpha, Kendall's tau-b, percent agreement, outliers.

Provenance
----------
Krippendorff's alpha — K. Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011),
coincidence-matrix form:

    units u, each with m_u >= 2 values from different annotators (units with fewer are dropped)
    o[c, k] = sum_u (number of ordered pairs (c, k) of values in u from different annotators) / (m_u - 1)
    n_c = sum_k o[c, k],   n = sum_c n_c
    alpha = 1 - (n - 1) * sum_{c,k} o[c,k] * d2(c,k) / sum_{c,k} n_c * n_k * d2(c,k)

    d2 nominal : 0 if c == k else 1
    d2 interval: (c - k)^2
    d2 ordinal : (sum_{g between c and k, inclusive} n_g  -  (n_c + n_k) / 2)^2   (values sorted)

Shapes: V distinct values -> o is a V x V float matrix; n_c a length-V vector.
Deviation: when the expected disagreement is zero (every value identical) alpha is undefined
and we return nan (callers that need JSON turn it into None).

Kendall's tau-b — M. G. Kendall, "The treatment of ties in ranking problems" (1945):

    tau_b = (n_c - n_d) / sqrt((n0 - t_a) * (n0 - t_b))
    n0 = N (N - 1) / 2 pairs, t_a / t_b = pairs tied in a / in b, n_c / n_d concordant / discordant.

Percent agreement — the share of annotator pairs (within a unit) that gave the same value,
pooled over all units (Artstein & Poesio 2008, "observed agreement").

Outlier rule (our own, documented in docs/feedback-quality.md): an annotator is flagged when
their agreement-with-consensus score is below median - k * max(1.4826 * MAD, floor) of all
annotators' scores (needs at least 3 scored annotators; 1.4826 * MAD estimates a standard
deviation robustly), or when their gold accuracy is below `gold_threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

import numpy as np

Units = Mapping[Hashable, Mapping[Hashable, object]]

LEVELS = ("nominal", "ordinal", "interval")


def _pairable_units(units: Units) -> list[list[object]]:
    """The value lists of units that have at least two non-missing values."""
    out = []
    for values in units.values():
        vals = [v for v in values.values() if v is not None and not _is_nan(v)]
        if len(vals) >= 2:
            out.append(vals)
    return out


def _is_nan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def coincidence_matrix(units: Units) -> tuple[list[object], np.ndarray]:
    """Krippendorff's coincidence matrix: (sorted distinct values, o[V, V])."""
    unit_values = _pairable_units(units)
    values = sorted({v for vals in unit_values for v in vals}, key=_sort_key)
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for vals in unit_values:
        weight = 1.0 / (len(vals) - 1)
        for i, c in enumerate(vals):
            for j, k in enumerate(vals):
                if i != j:  # ordered pairs of values from *different* annotators
                    o[index[c], index[k]] += weight
    return values, o


def _sort_key(v: object) -> tuple:
    # numbers sort numerically; anything else (nominal labels) by its string form
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def _distance(values: list[object], n_c: np.ndarray, level: str) -> np.ndarray:
    """The squared difference function d2[c, k] of the chosen measurement level."""
    v = len(values)
    if level == "nominal":
        return 1.0 - np.eye(v)
    if level == "interval":
        x = np.array([float(val) for val in values])  # type: ignore[arg-type]
        return (x[:, None] - x[None, :]) ** 2
    if level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        d2 = np.zeros((v, v))
        for c in range(v):
            for k in range(c, v):
                between = cum[k + 1] - cum[c]  # n_g summed over g = c..k
                d2[c, k] = d2[k, c] = (between - (n_c[c] + n_c[k]) / 2.0) ** 2
        return d2
    raise ValueError(f"krippendorff_alpha: level must be one of {LEVELS}, got {level!r}")


def krippendorff_alpha(units: Units, level: str = "nominal") -> float:
    """Krippendorff's alpha of `units` = {unit: {annotator: value}} (missing values allowed).

    Returns nan when fewer than two values are pairable or when all values are identical
    (no expected disagreement: alpha is undefined).
    """
    if level not in LEVELS:
        raise ValueError(f"krippendorff_alpha: level must be one of {LEVELS}, got {level!r}")
    values, o = coincidence_matrix(units)
    if o.sum() == 0:
        return float("nan")
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d2 = _distance(values, n_c, level)
    observed = (o * d2).sum()
    expected = (np.outer(n_c, n_c) * d2).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * observed / expected)


def kendall_tau(rank_a: Mapping[Hashable, float], rank_b: Mapping[Hashable, float]) -> float:
    """Kendall's tau-b between two rankings {item: rank} over their common items (ties allowed).

    Lower rank = better, but only the order matters. nan when fewer than two common items or
    when one ranking ties everything.
    """
    items = [i for i in rank_a if i in rank_b]
    concordant = discordant = tied_a = tied_b = 0
    for x, y in combinations(items, 2):
        da = np.sign(rank_a[x] - rank_a[y])
        db = np.sign(rank_b[x] - rank_b[y])
        tied_a += da == 0
        tied_b += db == 0
        if da != 0 and db != 0:
            if da == db:
                concordant += 1
            else:
                discordant += 1
    n0 = len(items) * (len(items) - 1) / 2
    denom = math.sqrt((n0 - tied_a) * (n0 - tied_b))
    if denom == 0:
        return float("nan")
    return float((concordant - discordant) / denom)


def groups_to_ranks(groups: Sequence[Sequence[Hashable]]) -> dict[Hashable, float]:
    """[[best...], [next...], ...] -> {item: mid-rank} (1-based; tied items share the mean position)."""
    ranks: dict[Hashable, float] = {}
    position = 1
    for group in groups:
        mid = position + (len(group) - 1) / 2.0
        for item in group:
            ranks[item] = mid
        position += len(group)
    return ranks


def agreement_counts(units: Units) -> tuple[int, int]:
    """(agreeing annotator pairs, all annotator pairs) pooled over units."""
    agree = total = 0
    for values in units.values():
        vals = [v for v in values.values() if v is not None]
        for x, y in combinations(vals, 2):
            total += 1
            agree += x == y
    return agree, total


def percent_agreement(units: Units) -> float:
    """Share of annotator pairs within a unit that gave the same value; nan if no unit has two."""
    agree, total = agreement_counts(units)
    return agree / total if total else float("nan")


def annotator_pair_agreement(units: Units) -> dict[Hashable, float]:
    """Per annotator: share of their (unit, other annotator) pairs where both gave the same value."""
    agree: dict[Hashable, int] = {}
    total: dict[Hashable, int] = {}
    for values in units.values():
        present = [(a, v) for a, v in values.items() if v is not None]
        for (a, va), (b, vb) in combinations(present, 2):
            same = int(va == vb)
            for who in (a, b):
                agree[who] = agree.get(who, 0) + same
                total[who] = total.get(who, 0) + 1
    return {a: agree[a] / total[a] for a in total}


def flag_outliers(
    scores: Mapping[Hashable, float | None],
    gold_accuracy: Mapping[Hashable, float | None] | None = None,
    k: float = 2.0,
    floor: float = 0.1,
    gold_threshold: float = 0.6,
    min_annotators: int = 3,
) -> dict[Hashable, str | None]:
    """Flag annotators who agree far less than the others, or fail gold items.

    `scores`: an agreement-with-consensus score per annotator (higher = better, e.g. Kendall's
    tau vs the consensus); None/nan = not scored. An annotator is flagged when
      - score < median - k * max(1.4826 * MAD, floor), with >= `min_annotators` scored, or
      - gold accuracy < `gold_threshold`.
    `floor` keeps a unanimous group (MAD = 0) from flagging someone for a tiny difference.
    Returns {annotator: reason or None} for every annotator in either mapping.
    """
    gold_accuracy = gold_accuracy or {}
    everyone = list(dict.fromkeys([*scores, *gold_accuracy]))
    valid = {a: float(s) for a, s in scores.items() if s is not None and not math.isnan(float(s))}
    cutoff = None
    if len(valid) >= min_annotators:
        arr = np.array(list(valid.values()))
        med = float(np.median(arr))
        mad = float(np.median(np.abs(arr - med)))
        cutoff = med - k * max(1.4826 * mad, floor)
    out: dict[Hashable, str | None] = {}
    for a in everyone:
        reasons = []
        if cutoff is not None and a in valid and valid[a] < cutoff:
            reasons.append(f"agreement {valid[a]:.2f} below cutoff {cutoff:.2f} (median - {k:g}*MAD)")
        acc = gold_accuracy.get(a)
        if acc is not None and not math.isnan(acc) and acc < gold_threshold:
            reasons.append(f"gold accuracy {acc:.2f} below {gold_threshold:.2f}")
        out[a] = "; ".join(reasons) or None
    return out
