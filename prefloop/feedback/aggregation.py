"""Consensus rankings by ranked pairs (Tideman's method).

Provenance
----------
T. N. Tideman, "Independence of clones as a criterion for voting rules", Social Choice and
Welfare 4 (1987). Plain notation:

    rankings r_1..r_V, each a list of groups best -> worst (a group of several = a tie;
    an item absent from a ranking is not compared by it)
    P[x, y]   = number of rankings that put x strictly above y
    margin    = P[x, y] - P[y, x]; the pair (x over y) is a majority when margin > 0
    sort majorities by decreasing margin, then lock each in turn unless it would close a
    cycle with the pairs already locked (the locked pairs form a DAG)
    output: the DAG's layers (items with no locked loser-edge pointing into them from the
    remaining items come first); items in the same layer share a group (a tie)

Shapes: N items -> P is an N x N count matrix.
Deviations from the paper:
  - Tideman breaks margin ties with a tie-breaking ranking; we break them deterministically by
    the winner's vote count P[x, y] (larger first, the "winning votes" variant) and then by the
    items' order of first appearance in the input.
  - The paper outputs a single winner/total order; we output layers so that items the locked
    pairs do not separate stay tied.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

Groups = Sequence[Sequence[Hashable]]


def _item_order(rankings: Iterable[Groups], items: Iterable[Hashable] | None) -> list[Hashable]:
    order: dict[Hashable, None] = {}
    for item in items or ():
        order[item] = None
    for ranking in rankings:
        for group in ranking:
            for item in group:
                order[item] = None
    return list(order)


def pairwise_preferences(rankings: Iterable[Groups], items: list[Hashable]) -> list[list[int]]:
    """P[i][j] = number of rankings putting items[i] strictly above items[j]."""
    index = {item: i for i, item in enumerate(items)}
    prefs = [[0] * len(items) for _ in items]
    for ranking in rankings:
        seen = set()
        for g, group in enumerate(ranking):
            for item in group:
                if item in seen:
                    raise ValueError(f"ranked_pairs: item {item!r} appears twice in one ranking")
                seen.add(item)
            for better in group:
                for worse_group in ranking[g + 1 :]:
                    for worse in worse_group:
                        prefs[index[better]][index[worse]] += 1
    return prefs


def _reaches(edges: dict[int, set[int]], start: int, goal: int) -> bool:
    """Whether `goal` can be reached from `start` along locked edges (depth-first)."""
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in edges[node]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def locked_pairs(prefs: list[list[int]]) -> list[tuple[int, int]]:
    """Majorities (winner, loser) locked in Tideman order, skipping those that close a cycle."""
    n = len(prefs)
    majorities = [
        (prefs[i][j] - prefs[j][i], prefs[i][j], i, j)
        for i in range(n)
        for j in range(n)
        if prefs[i][j] > prefs[j][i]
    ]
    # decreasing margin, then decreasing winning votes, then input order of winner, loser
    majorities.sort(key=lambda m: (-m[0], -m[1], m[2], m[3]))
    edges: dict[int, set[int]] = {i: set() for i in range(n)}
    locked = []
    for _, _, winner, loser in majorities:
        if _reaches(edges, loser, winner):
            continue  # locking winner -> loser would close a cycle
        edges[winner].add(loser)
        locked.append((winner, loser))
    return locked


def ranked_pairs(rankings: Iterable[Groups], items: Iterable[Hashable] | None = None) -> list[list[Hashable]]:
    """Consensus of several rankings (groups best -> worst, ties allowed) by ranked pairs.

    `items` adds items that may appear in no ranking (they end up in the first layer, since
    nothing beats them); by default the items are those of the rankings. Returns groups best ->
    worst; items within a group are in input order.
    """
    rankings = [list(map(list, r)) for r in rankings]
    order = _item_order(rankings, items)
    if not order:
        return []
    prefs = pairwise_preferences(rankings, order)
    locked = locked_pairs(prefs)
    beaten_by: dict[int, set[int]] = {i: set() for i in range(len(order))}
    for winner, loser in locked:
        beaten_by[loser].add(winner)
    remaining = set(range(len(order)))
    groups: list[list[Hashable]] = []
    while remaining:
        layer = sorted(i for i in remaining if not (beaten_by[i] & remaining))
        groups.append([order[i] for i in layer])
        remaining -= set(layer)
    return groups
