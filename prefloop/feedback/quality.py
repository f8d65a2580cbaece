"""Campaign quality and model leaderboards from stored judgments (pure functions, no database).

Input: the judgment dicts built by `store.campaign_judgments`, one per live submission:
    {"judgment_id", "item_id", "annotator", "is_gold", "gold": dict | None, "prompt",
     "responses": [{"id", "model", "text"}], "payload": {pairwise?, ranking?, ratings?, thumbs?,
     critique?, edit?}}
`gold` is {"ranking": [[pos, ...], ...]} or {"chosen": pos}; a pos is the 0-based index of a
response in the item's `responses` list.

What each number means (the full write-up is docs/feedback-quality.md):
- pair outcomes: every judgment gives an outcome per unordered pair of responses — from its
  ranking (all pairs; same group = tie) and from its pairwise choice (which wins over the
  ranking for that pair); "both_bad" counts as a tie; "cant_tell" gives no outcome.
- krippendorff_alpha_ratings: interval alpha over units (item, response) of numeric ratings.
- krippendorff_alpha_rankings: ordinal alpha over units (item, response) of mid-rank positions.
- percent_agreement_pairs: share of annotator pairs agreeing on a pair outcome.
- kendall_tau_vs_consensus: mean over items of tau-b between the annotator's ranking and the
  leave-one-out ranked-pairs consensus of the other annotators of that item.
- gold_accuracy: over the annotator's gold judgments, the share of gold-ordered pairs they
  order the same way (a tie counts half), averaged per judgment.
- Leaderboard comparisons: one per judged pair of responses from different models (ties
  count half); Elo averaged over 100 seeded orders (order-independent), Bradley–Terry on the
  Elo-like scale with CIs.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from prefloop.feedback.aggregation import Groups, ranked_pairs
from prefloop.feedback.agreement import (
    agreement_counts,
    annotator_pair_agreement,
    flag_outliers,
    groups_to_ranks,
    kendall_tau,
    krippendorff_alpha,
    percent_agreement,
)
from prefloop.feedback.ratings import bradley_terry, elo_permuted

Judgment = dict[str, Any]
PairKey = tuple[str, str]  # response ids as strings, sorted


# --------------------------------------------------------------------------- helpers
def _ids(judgment: Judgment) -> dict[str, Hashable]:
    """str(response id) -> response id, so JSON's string keys map back to real ids."""
    return {str(r["id"]): r["id"] for r in judgment.get("responses", [])}


def _models(judgment: Judgment) -> dict[str, Any]:
    return {str(r["id"]): r.get("model") for r in judgment.get("responses", [])}


def _pair(x: Hashable, y: Hashable) -> tuple[PairKey, bool]:
    """Sorted pair key of two response ids and whether (x, y) was swapped to sort it."""
    sx, sy = str(x), str(y)
    return ((sx, sy), False) if sx <= sy else ((sy, sx), True)


def _flip(outcome: str, swapped: bool) -> str:
    if not swapped or outcome == "tie":
        return outcome
    return "first" if outcome == "second" else "second"


def judgment_ranking(judgment: Judgment) -> list[list[str]] | None:
    """The judgment's ranking as groups of str ids: its ranking, else its pairwise choice."""
    payload = judgment.get("payload") or {}
    if payload.get("ranking"):
        return [[str(r) for r in group] for group in payload["ranking"]]
    pw = payload.get("pairwise")
    if pw and pw.get("choice") != "cant_tell":
        a, b, choice = str(pw["a"]), str(pw["b"]), pw.get("choice")
        if choice == "a":
            return [[a], [b]]
        if choice == "b":
            return [[b], [a]]
        return [[a, b]]
    return None


def pair_outcomes(judgment: Judgment) -> dict[PairKey, str]:
    """{sorted pair of str ids: "first" | "second" | "tie"} (which of the sorted pair won)."""
    out: dict[PairKey, str] = {}
    payload = judgment.get("payload") or {}
    ranking = payload.get("ranking")
    if ranking:
        position = {str(r): g for g, group in enumerate(ranking) for r in group}
        ids = list(position)
        for i, x in enumerate(ids):
            for y in ids[i + 1 :]:
                key, swapped = _pair(x, y)
                raw = (
                    "tie"
                    if position[x] == position[y]
                    else ("first" if position[x] < position[y] else "second")
                )
                out[key] = _flip(raw, swapped)
    pw = payload.get("pairwise")
    if pw and pw.get("choice") != "cant_tell":  # judged, but no outcome
        key, swapped = _pair(pw["a"], pw["b"])
        raw = {"a": "first", "b": "second"}.get(pw.get("choice"), "tie")
        out[key] = _flip(raw, swapped)  # an explicit choice overrides the ranking's pair
    return dict(sorted(out.items()))


def _gold_groups(judgment: Judgment) -> list[list[str]] | None:
    """Gold as groups of str response ids (positions resolved against `responses`)."""
    gold = judgment.get("gold")
    if not judgment.get("is_gold") or not gold:
        return None
    ids = [str(r["id"]) for r in judgment.get("responses", [])]

    def resolve(pos: Any) -> str:
        return ids[int(pos)]

    if gold.get("ranking"):
        return [[resolve(p) for p in group] for group in gold["ranking"]]
    if gold.get("chosen") is not None:
        chosen = resolve(gold["chosen"])
        return [[chosen], [i for i in ids if i != chosen]]
    return None


def gold_score(judgment: Judgment) -> float | None:
    """Share of gold's strictly ordered pairs the judgment orders the same way (tie = half).

    None when the judgment is not on a gold item or judges none of gold's pairs.
    """
    groups = _gold_groups(judgment)
    if groups is None:
        return None
    gold_pairs = pair_outcomes({"payload": {"ranking": groups}})
    mine = pair_outcomes(judgment)
    points = []
    for key, truth in gold_pairs.items():
        if truth == "tie" or key not in mine:
            continue
        points.append(1.0 if mine[key] == truth else 0.5 if mine[key] == "tie" else 0.0)
    return float(np.mean(points)) if points else None


def _clean(x: float | None) -> float | None:
    """nan -> None so that the report is valid JSON."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)


def _by_item(judgments: Iterable[Judgment]) -> dict[Hashable, list[Judgment]]:
    items: dict[Hashable, list[Judgment]] = defaultdict(list)
    for j in judgments:
        items[j["item_id"]].append(j)
    return items


# --------------------------------------------------------------------------- consensus
def consensus_ranking(judgments_of_one_item: Sequence[Judgment]) -> list[list[Hashable]]:
    """Ranked-pairs consensus of one item's judgments (rankings and pairwise choices).

    Returns groups of response ids best -> worst (ties share a group); only responses that some
    judgment ranked or compared appear. [] when no judgment ranks or compares anything.
    """
    ids: dict[str, Hashable] = {}
    rankings = []
    for j in judgments_of_one_item:
        ids.update(_ids(j))
        ranking = judgment_ranking(j)
        if ranking:
            rankings.append(ranking)
    groups = ranked_pairs(rankings)
    return [[ids.get(str(r), r) for r in group] for group in groups]


# --------------------------------------------------------------------------- quality report
def _units(judgments: Sequence[Judgment]) -> tuple[dict, dict, dict]:
    """Units for agreement: ratings {(item, resp): {annotator: score}}, rank positions, pairs."""
    ratings: dict = defaultdict(dict)
    ranks: dict = defaultdict(dict)
    pairs: dict = defaultdict(dict)
    for j in judgments:
        item, who = j["item_id"], j["annotator"]
        payload = j.get("payload") or {}
        for rid, score in (payload.get("ratings") or {}).items():
            ratings[(item, str(rid))][who] = float(score)
        if payload.get("ranking"):
            for rid, rank in groups_to_ranks(judgment_ranking(j) or []).items():
                ranks[(item, rid)][who] = rank
        for key, outcome in pair_outcomes(j).items():
            pairs[(item, key)][who] = outcome
    return ratings, ranks, pairs


def _tau_vs_consensus(judgments: Sequence[Judgment]) -> dict[Hashable, float | None]:
    """Per annotator: mean tau-b against the leave-one-out consensus of each item they ranked."""
    taus: dict[Hashable, list[float]] = defaultdict(list)
    for item_judgments in _by_item(judgments).values():
        ranked: list[tuple[Any, Groups]] = []
        for j in item_judgments:
            ranking = judgment_ranking(j)
            if ranking:
                ranked.append((j["annotator"], ranking))
        for i, (who, mine) in enumerate(ranked):
            others = [r for k, (a, r) in enumerate(ranked) if k != i and a != who]
            if not others:
                continue
            consensus = ranked_pairs(others)
            tau = kendall_tau(groups_to_ranks(mine), groups_to_ranks(consensus))
            if not math.isnan(tau):
                taus[who].append(tau)
    return {who: float(np.mean(v)) for who, v in taus.items()}


def item_agreement(judgments_of_one_item: Sequence[Judgment]) -> float | None:
    """Share of (response pair, annotator pair) combinations where both annotators gave the
    same outcome on the pair (first better / second better / tie), pooled over the item's
    response pairs; None when fewer than two annotators compared any pair.

    Rankings count as all their pairs, a pairwise choice as its one pair (as in the report's
    percent agreement on pairs, restricted to one item): the review page's "low agreement" filter.
    """
    units: dict[Hashable, dict[Hashable, str]] = defaultdict(dict)
    for j in judgments_of_one_item:
        for pair, outcome in pair_outcomes(j).items():
            units[pair][j["annotator"]] = outcome
    agree, total = agreement_counts(units)
    return agree / total if total else None


def quality_report(
    judgments: Sequence[Judgment], gold_threshold: float = 0.6, outlier_k: float = 2.0
) -> dict[str, Any]:
    """Agreement per campaign and per annotator, gold accuracy and flagged annotators (JSON-ready)."""
    judgments = list(judgments)
    ratings, ranks, pairs = _units(judgments)
    taus = _tau_vs_consensus(judgments)
    pair_agree = annotator_pair_agreement(pairs)
    gold: dict[Hashable, list[float]] = defaultdict(list)
    counts: dict[Hashable, int] = defaultdict(int)
    for j in judgments:
        counts[j["annotator"]] += 1
        g = gold_score(j)
        if g is not None:
            gold[j["annotator"]].append(g)
    gold_acc = {a: float(np.mean(v)) for a, v in gold.items()}
    # consensus score for the outlier rule: tau when the campaign has rankings, else pair agreement
    consensus_score = {a: taus.get(a, pair_agree.get(a)) for a in counts}
    flags = flag_outliers(consensus_score, gold_acc, k=outlier_k, gold_threshold=gold_threshold)
    annotators = [
        {
            "name": a,
            "n": counts[a],
            "n_gold": len(gold.get(a, [])),
            "gold_accuracy": _clean(gold_acc.get(a)),
            "kendall_tau_vs_consensus": _clean(taus.get(a)),
            "pair_agreement": _clean(pair_agree.get(a)),
            "flagged": flags.get(a) is not None,
            "reason": flags.get(a),
        }
        for a in sorted(counts, key=str)
    ]
    return {
        "n_judgments": len(judgments),
        "n_items": len({j["item_id"] for j in judgments}),
        "annotators": annotators,
        "krippendorff_alpha_ratings": _clean(krippendorff_alpha(ratings, "interval")),
        "krippendorff_alpha_rankings": _clean(krippendorff_alpha(ranks, "ordinal")),
        "percent_agreement_pairs": _clean(percent_agreement(pairs)),
    }


# --------------------------------------------------------------------------- leaderboard
def model_comparisons(judgments: Iterable[Judgment]) -> list[tuple[str, str, float]]:
    """(model_a, model_b, score of a) for every judged pair of responses from different models."""
    out = []
    for j in judgments:
        models = _models(j)
        for (x, y), outcome in pair_outcomes(j).items():
            ma, mb = models.get(x), models.get(y)
            if ma is None or mb is None or ma == mb:
                continue
            out.append((ma, mb, {"first": 1.0, "second": 0.0, "tie": 0.5}[outcome]))
    return out


def leaderboard(
    judgments: Sequence[Judgment], n_bootstrap: int = 200, seed: int = 0, k: float = 32.0
) -> dict[str, Any]:
    """Elo (mean over 100 seeded orders, so submission order does not matter) and Bradley–Terry
    (Elo-like scale, bootstrap CI) ratings of the campaign's models."""
    return comparison_board(model_comparisons(judgments), n_bootstrap=n_bootstrap, seed=seed, k=k)


def comparison_board(
    comparisons: Sequence[tuple[str, str, float]], n_bootstrap: int = 200, seed: int = 0, k: float = 32.0
) -> dict[str, Any]:
    """The leaderboard of (model_a, model_b, score of a) comparisons from any judge (people, AI, gold)."""
    elo_ratings = elo_permuted(comparisons, k=k, seed=seed)
    bt = bradley_terry(comparisons, n_bootstrap=n_bootstrap, seed=seed, scale="elo")
    return {
        "elo": [{"model": m, "rating": r} for m, r in sorted(elo_ratings.items(), key=lambda kv: -kv[1])],
        "bradley_terry": [
            {"model": m, **stats} for m, stats in sorted(bt.items(), key=lambda kv: -kv[1]["score"])
        ],
        "n_comparisons": len(comparisons),
    }


def leaderboard_png(board: dict[str, Any]) -> bytes:
    """A PNG of the Bradley–Terry scores with their CIs (and Elo as crosses), via matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = list(reversed(board.get("bradley_terry", [])))  # best at the top
    elo_of = {e["model"]: e["rating"] for e in board.get("elo", [])}
    fig = Figure(figsize=(6.4, 0.5 * max(len(rows), 2) + 1.2), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    if rows:
        score = np.array([r["score"] for r in rows])
        err = np.array([[r["score"] - r["ci_low"] for r in rows], [r["ci_high"] - r["score"] for r in rows]])
        ax.errorbar(
            score,
            y,
            xerr=np.clip(err, 0, None),
            fmt="o",
            color="#3355cc",
            capsize=4,
            label="Bradley–Terry (95% CI)",
        )
        ax.scatter(
            [elo_of.get(r["model"], np.nan) for r in rows], y, marker="x", color="#cc5533", label="Elo"
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [str(r["model"]) for r in rows])
    ax.set_xlabel("rating (Elo scale)")
    ax.set_title(f"Leaderboard ({board.get('n_comparisons', 0)} comparisons)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------- campaign report
def campaign_report(judgments: Sequence[Judgment], n_bootstrap: int = 200, seed: int = 0) -> dict[str, Any]:
    """Quality report and leaderboard together (JSON-ready)."""
    return {"quality": quality_report(judgments), "leaderboard": leaderboard(judgments, n_bootstrap, seed)}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def report_text(report: dict[str, Any]) -> str:
    """A plain-text rendering of `campaign_report(...)` for terminals and logs."""
    q, board = report["quality"], report["leaderboard"]
    lines = [
        f"judgments: {q['n_judgments']}   items: {q['n_items']}   annotators: {len(q['annotators'])}",
        f"Krippendorff alpha (ratings, interval): {_fmt(q['krippendorff_alpha_ratings'])}",
        f"Krippendorff alpha (rankings, ordinal): {_fmt(q['krippendorff_alpha_rankings'])}",
        f"percent agreement on pairs:             {_fmt(q['percent_agreement_pairs'])}",
        "",
        f"{'annotator':<16}{'n':>5}{'gold acc':>10}{'tau':>8}{'pairs':>8}  flag",
    ]
    for a in q["annotators"]:
        lines.append(
            f"{a['name']!s:<16}{a['n']:>5}{_fmt(a['gold_accuracy'], 2):>10}"
            f"{_fmt(a['kendall_tau_vs_consensus'], 2):>8}{_fmt(a['pair_agreement'], 2):>8}  {a['reason'] or ''}"
        )
    lines += [
        "",
        f"leaderboard ({board['n_comparisons']} comparisons)",
        f"{'model':<24}{'BT':>8}{'95% CI':>18}{'Elo':>8}",
    ]
    elo_of = {e["model"]: e["rating"] for e in board["elo"]}
    for r in board["bradley_terry"]:
        ci = f"[{r['ci_low']:.0f}, {r['ci_high']:.0f}]"
        lines.append(
            f"{r['model']!s:<24}{r['score']:>8.0f}{ci:>18}{elo_of.get(r['model'], float('nan')):>8.0f}"
        )
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    """`campaign_report(...)` as indented JSON text."""
    return json.dumps(report, indent=2, default=str)
