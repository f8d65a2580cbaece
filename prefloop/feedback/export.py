"""Campaign judgments -> training records (`prefloop.data.records`), as JSONL.

kind (what the training command wants) and where it comes from in a submission:

    pairwise       PreferencePair(prompt, chosen, rejected, margin). From `pairwise` choices:
                   choice a/b gives one pair with margin from the strength of preference,
                       significantly_better 3.0, better 2.0, slightly_better 1.0,
                       negligibly_better 0.5, strength not given -> no margin (None);
                   tie and both_bad give no pair. A submission with a `ranking` but no
                   `pairwise` gives every strictly ordered pair of its ranking (no margin).
    ranked         RankedResponses(prompt, responses in item order, ranks), ties = equal ranks
                   (dense: the i-th group, best first, has rank i). From `ranking`.
    binary         BinaryFeedback(prompt, completion, desirable) per thumbs up/down (KTO data).
    rating         Rating(prompt, response, score) per rated response.
    demonstration  Demonstration(prompt, edited text) per edit (SFT data).
    critique       Demonstration per critique (SFT data for a critic): the prompt is the chat
                   [user: the item's prompt, assistant: the critiqued response, user:
                   CRITIQUE_REQUEST], the response is the annotator's critique; meta holds the
                   plain prompt, the critiqued response, its model and the annotator. A critique
                   is written about the whole task, so the critiqued response is the one the
                   annotator preferred: the edited one, else the pairwise choice, else the first
                   of the ranking's best group, else the item's first response (meta
                   'critique_of' says which rule applied). `prefloop sft --data` reads it.

mode=raw writes one record per annotator submission (meta says who, which item, which models).
mode=consensus merges the annotators of each item first: rankings (and the pairs derived from
them) come from `quality.consensus_ranking` (ranked pairs / Tideman over the item's
judgments); binary takes the majority thumb per response (exact ties dropped); rating the mean
score; demonstrations have no consensus, so every edit is kept as in raw mode.

Both modes finish with `trainable`: identical texts within one item (two models answering
alike) would make records the training readers reject, so such pairs are dropped and such
K-wise copies merged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from itertools import combinations
from typing import Any, Literal, cast

from sqlalchemy.orm import Session

from prefloop.data.records import (
    BinaryFeedback,
    Demonstration,
    PreferencePair,
    RankedResponses,
    Rating,
    Record,
    record_to_dict,
)
from prefloop.feedback.store import campaign_judgments

Kind = Literal["pairwise", "ranked", "binary", "rating", "demonstration", "critique"]
Mode = Literal["raw", "consensus"]
KINDS = ("pairwise", "ranked", "binary", "rating", "demonstration", "critique")
CRITIQUE_REQUEST = "Critique the answer above: what is wrong or missing, and what is good?"
MARGINS = {"significantly_better": 3.0, "better": 2.0, "slightly_better": 1.0, "negligibly_better": 0.5}


class ExportError(ValueError):
    """An export that cannot be made (unknown kind, statistics module missing)."""


def to_jsonl(records: list[Record]) -> str:
    return "".join(json.dumps(record_to_dict(r), ensure_ascii=False) + "\n" for r in records)


def export_records(session: Session, cid: int, kind: str, mode: str = "raw") -> list[Record]:
    """The records of campaign `cid` for one kind, raw or consensus."""
    if kind not in KINDS:
        raise ExportError(f"unknown export kind {kind!r}; choose one of {list(KINDS)}")
    if mode not in ("raw", "consensus"):
        raise ExportError(f"unknown export mode {mode!r}; choose 'raw' or 'consensus'")
    judgments = campaign_judgments(session, cid)
    if mode == "raw" or kind in ("demonstration", "critique"):
        records = [r for j in judgments for r in RAW[kind](j)]
    else:
        by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for j in judgments:
            by_item[j["item_id"]].append(j)
        records = [r for item_id in sorted(by_item) for r in CONSENSUS[kind](by_item[item_id])]
    return trainable(records)


def trainable(records: list[Record]) -> list[Record]:
    """Records the training readers accept, when an item holds the same text twice.

    Two models (or two samples) often write the very same answer. Such copies are one text to a
    trainer: a pair whose chosen and rejected texts are equal teaches nothing and is dropped; in a
    K-wise record the copies merge into one response at the best rank any copy got (ranks made
    dense again; meta 'models' names every model that wrote it), and a record left with fewer than
    two texts is dropped. `prefloop.data.io.read_records` rejects both shapes otherwise.
    """
    out: list[Record] = []
    for r in records:
        if isinstance(r, PreferencePair):
            if r.chosen != r.rejected:
                out.append(r)
        elif isinstance(r, RankedResponses):
            merged = _merge_copies(r)
            if merged is not None:
                out.append(merged)
        else:
            out.append(r)
    return out


def _merge_copies(r: RankedResponses) -> RankedResponses | None:
    if len(set(r.responses)) == len(r.responses):
        return r
    first: dict[str, int] = {}  # text -> index into the kept lists
    texts: list[str] = []
    ranks: list[int] = []
    models: list[list[str]] = []
    old_models = r.meta.get("models") or [None] * len(r.responses)
    given = r.ranks if r.ranks is not None else list(range(len(r.responses)))
    for text, rank, model in zip(r.responses, given, old_models):
        if text in first:
            k = first[text]
            ranks[k] = min(ranks[k], rank)
            if model is not None and model not in models[k]:
                models[k].append(model)
            continue
        first[text] = len(texts)
        texts.append(text)
        ranks.append(rank)
        models.append([model] if model is not None else [])
    if len(texts) < 2:
        return None
    meta = dict(r.meta)
    if "models" in meta:
        meta["models"] = ["+".join(m) if m else None for m in models]
    meta["merged_copies"] = len(r.responses) - len(texts)
    return RankedResponses(prompt=r.prompt, responses=texts, ranks=_dense(ranks), meta=meta)


# ---------------------------------------------------------------------------------------------
# Raw: one submission -> records


def _texts(j: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in j["responses"]}


def _meta(j: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta = {"item_id": j["item_id"], "annotator": j["annotator"], "judgment_id": j["judgment_id"]}
    if j.get("is_gold"):
        meta["gold"] = True
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def _int_keys(mapping: dict[Any, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items()}  # JSON stores object keys as strings


def ranking_pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    """Every (better, worse) pair of a grouped ranking; members of one group are tied (no pair)."""
    return [(hi, lo) for g_hi, g_lo in combinations(groups, 2) for hi in g_hi for lo in g_lo]


def ranks_of(groups: list[list[int]], ids: list[int]) -> list[int]:
    rank = {rid: i for i, group in enumerate(groups) for rid in group}
    return [rank[rid] for rid in ids]


def raw_pairwise(j: dict[str, Any]) -> list[PreferencePair]:
    texts, payload = _texts(j), j["payload"]
    pw = payload.get("pairwise")
    if pw is not None:
        if pw["choice"] not in ("a", "b"):
            return []  # tie / both_bad / cant_tell: no preference to learn from
        chosen, rejected = (pw["a"], pw["b"]) if pw["choice"] == "a" else (pw["b"], pw["a"])
        strength = pw.get("strength")
        return [
            _pair(
                j, texts, chosen, rejected, MARGINS.get(strength) if strength else None, strength, "pairwise"
            )
        ]
    if payload.get("ranking"):
        return [
            _pair(j, texts, hi, lo, None, None, "ranking") for hi, lo in ranking_pairs(payload["ranking"])
        ]
    return []


def _pair(
    j: dict[str, Any],
    texts: dict,
    chosen: int,
    rejected: int,
    margin: float | None,
    strength: str | None,
    source: str,
) -> PreferencePair:
    return PreferencePair(
        prompt=j["prompt"],
        chosen=texts[chosen]["text"],
        rejected=texts[rejected]["text"],
        margin=margin,
        meta=_meta(
            j,
            chosen_model=texts[chosen]["model"],
            rejected_model=texts[rejected]["model"],
            strength=strength,
            source=source,
        ),
    )


def raw_ranked(j: dict[str, Any]) -> list[RankedResponses]:
    groups = j["payload"].get("ranking")
    if not groups:
        return []
    ids = [r["id"] for r in j["responses"]]
    return [
        RankedResponses(
            prompt=j["prompt"],
            responses=[r["text"] for r in j["responses"]],
            ranks=ranks_of(groups, ids),
            meta=_meta(j, models=[r["model"] for r in j["responses"]]),
        )
    ]


def raw_binary(j: dict[str, Any]) -> list[BinaryFeedback]:
    texts = _texts(j)
    thumbs = _int_keys(j["payload"].get("thumbs") or {})
    return [
        BinaryFeedback(
            prompt=j["prompt"],
            completion=texts[rid]["text"],
            desirable=bool(up),
            meta=_meta(j, model=texts[rid]["model"]),
        )
        for rid, up in sorted(thumbs.items())
    ]


def raw_rating(j: dict[str, Any]) -> list[Rating]:
    texts = _texts(j)
    ratings = _int_keys(j["payload"].get("ratings") or {})
    return [
        Rating(
            prompt=j["prompt"],
            response=texts[rid]["text"],
            score=float(score),
            meta=_meta(j, model=texts[rid]["model"]),
        )
        for rid, score in sorted(ratings.items())
    ]


def raw_demonstration(j: dict[str, Any]) -> list[Demonstration]:
    edit = j["payload"].get("edit")
    if not edit:
        return []
    source = _texts(j)[edit["response_id"]]
    return [
        Demonstration(
            prompt=j["prompt"],
            response=edit["text"],
            meta=_meta(j, edited_from=source["text"], model=source["model"]),
        )
    ]


def critiqued_response(j: dict[str, Any]) -> tuple[int, str]:
    """(response id, rule) of the response a submission's critique is taken to be about."""
    payload = j["payload"]
    if payload.get("edit"):
        return payload["edit"]["response_id"], "edited"
    pw = payload.get("pairwise")
    if pw and pw["choice"] in ("a", "b"):
        return pw[pw["choice"]], "chosen"
    if payload.get("ranking"):
        return payload["ranking"][0][0], "best_ranked"
    return j["responses"][0]["id"], "first"


def raw_critique(j: dict[str, Any]) -> list[Demonstration]:
    critique = j["payload"].get("critique")
    if not critique or not critique.strip():
        return []
    rid, rule = critiqued_response(j)
    response = _texts(j)[rid]
    prompt = j["prompt"]
    chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    chat += [
        {"role": "assistant", "content": response["text"]},
        {"role": "user", "content": CRITIQUE_REQUEST},
    ]
    return [
        Demonstration(
            prompt=chat,
            response=critique,
            meta=_meta(
                j,
                prompt=prompt,
                critiqued_response=response["text"],
                model=response["model"],
                critique_of=rule,
            ),
        )
    ]


RAW: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "pairwise": raw_pairwise,
    "ranked": raw_ranked,
    "binary": raw_binary,
    "rating": raw_rating,
    "demonstration": raw_demonstration,
    "critique": raw_critique,
}


# ---------------------------------------------------------------------------------------------
# Consensus: all submissions of one item -> records


def _consensus_groups(item_judgments: list[dict[str, Any]]) -> list[list[int]]:
    try:
        from prefloop.feedback import quality
    except ImportError as exc:
        raise ExportError(f"consensus export needs prefloop.feedback.quality: {exc}") from None
    return [[int(cast(int, x)) for x in g] for g in quality.consensus_ranking(item_judgments) or []]


def _item_meta(item_judgments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    first = item_judgments[0]
    meta = {"item_id": first["item_id"], "n_annotators": len({j["annotator"] for j in item_judgments})}
    if first.get("is_gold"):
        meta["gold"] = True
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def consensus_ranked(item_judgments: list[dict[str, Any]]) -> list[RankedResponses]:
    groups = _consensus_groups(item_judgments)
    first = item_judgments[0]
    ranked = {r for g in groups for r in g}
    # Only the responses some annotator ranked or compared take part (item order kept).
    shown = [r for r in first["responses"] if r["id"] in ranked]
    if len(shown) < 2:
        return []  # no ranking information for this item (e.g. only thumbs or ratings)
    return [
        RankedResponses(
            prompt=first["prompt"],
            responses=[r["text"] for r in shown],
            ranks=_dense(ranks_of(groups, [r["id"] for r in shown])),
            meta=_item_meta(item_judgments, models=[r["model"] for r in shown]),
        )
    ]


def _dense(ranks: list[int]) -> list[int]:
    """Renumber ranks 0, 1, 2, ... keeping order and ties."""
    order = {r: i for i, r in enumerate(sorted(set(ranks)))}
    return [order[r] for r in ranks]


def consensus_pairwise(item_judgments: list[dict[str, Any]]) -> list[PreferencePair]:
    groups = _consensus_groups(item_judgments)
    first = item_judgments[0]
    texts = _texts(first)
    return [
        PreferencePair(
            prompt=first["prompt"],
            chosen=texts[hi]["text"],
            rejected=texts[lo]["text"],
            meta=_item_meta(
                item_judgments, chosen_model=texts[hi]["model"], rejected_model=texts[lo]["model"]
            ),
        )
        for hi, lo in ranking_pairs(groups)
        if hi in texts and lo in texts
    ]


def consensus_binary(item_judgments: list[dict[str, Any]]) -> list[BinaryFeedback]:
    votes: dict[int, list[bool]] = defaultdict(list)
    for j in item_judgments:
        for rid, up in _int_keys(j["payload"].get("thumbs") or {}).items():
            votes[rid].append(bool(up))
    first = item_judgments[0]
    texts = _texts(first)
    out = []
    for rid in sorted(votes):
        ups, n = sum(votes[rid]), len(votes[rid])
        if 2 * ups == n:
            continue  # an exact split is no consensus
        out.append(
            BinaryFeedback(
                prompt=first["prompt"],
                completion=texts[rid]["text"],
                desirable=2 * ups > n,
                meta=_item_meta(item_judgments, model=texts[rid]["model"], votes_up=ups, votes=n),
            )
        )
    return out


def consensus_rating(item_judgments: list[dict[str, Any]]) -> list[Rating]:
    scores: dict[int, list[float]] = defaultdict(list)
    for j in item_judgments:
        for rid, score in _int_keys(j["payload"].get("ratings") or {}).items():
            scores[rid].append(float(score))
    first = item_judgments[0]
    texts = _texts(first)
    return [
        Rating(
            prompt=first["prompt"],
            response=texts[rid]["text"],
            score=sum(s) / len(s),
            meta=_item_meta(item_judgments, model=texts[rid]["model"], n_ratings=len(s)),
        )
        for rid, s in sorted(scores.items())
    ]


CONSENSUS: dict[str, Callable[[list[dict[str, Any]]], list[Any]]] = {
    "pairwise": consensus_pairwise,
    "ranked": consensus_ranked,
    "binary": consensus_binary,
    "rating": consensus_rating,
}
