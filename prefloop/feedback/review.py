"""The review page's backend: judgments by item, annotator or agreement; accept / reject;
comments per item; annotators' "can't judge / report a problem".

    GET  /api/campaigns/{cid}/review?by=item|annotator|agreement&max_agreement=&annotator=
    GET  /api/campaigns/{cid}/review.html   (same, as the server-rendered page body)
    GET  /api/campaigns/{cid}/report.html   (the quality report, server-rendered)
    POST /api/judgments/{jid}/review        {"review": "accepted" | "rejected" | null}
    POST /api/items/{item_id}/comments      {"text"}  (admin)
    POST /api/tasks/{task_id}/problem       {"text"}  (the task's annotator: skips the task)

A rejected judgment stays in the database (and on this page) but `store.campaign_judgments`
leaves it out, so no export, report or leaderboard sees it. Item agreement is
`quality.item_agreement`: the share of annotator pairs giving the same outcome on a pair of
responses, pooled over the item's pairs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from prefloop.feedback.app import TEMPLATES_DIR, Id, _quality, get_campaign, own_task, skip_task
from prefloop.feedback.auth import AdminUser, CurrentUser
from prefloop.feedback.rendering import render_markdown
from prefloop.feedback.schemas import NoteIn, ReviewIn
from prefloop.feedback.store import (
    Item,
    ItemNote,
    Judgment,
    Store,
    User,
    campaign_judgments,
    utcnow,
)

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
By = Literal["item", "annotator", "agreement"]
STRENGTH_WORDS = {
    "significantly_better": "significantly better",
    "better": "better",
    "slightly_better": "slightly better",
    "negligibly_better": "negligibly better",
}


def judgment_lines(payload: dict[str, Any], label: dict[int, str]) -> list[tuple[str, str]]:
    """A submission as (what, answer) rows in the item's response letters, e.g.
    ("ranking", "B > A = C"), ("pairwise", "A better than B (slightly better)")."""

    def name(rid: Any) -> str:
        key = int(rid) if str(rid).isdigit() else rid
        return label.get(key, f"#{rid}")

    rows: list[tuple[str, str]] = []
    if payload.get("ranking"):
        rows.append(("ranking", " > ".join(" = ".join(name(r) for r in g) for g in payload["ranking"])))
    pw = payload.get("pairwise")
    if pw:
        a, b = name(pw["a"]), name(pw["b"])
        text = {
            "a": f"{a} better than {b}",
            "b": f"{b} better than {a}",
            "tie": f"{a} and {b} tie",
            "both_bad": f"{a} and {b} both bad",
            "cant_tell": f"can't tell {a} from {b}",
        }[pw["choice"]]
        if pw.get("strength"):
            text += f" ({STRENGTH_WORDS.get(pw['strength'], pw['strength'])})"
        rows.append(("pairwise", text))
    if payload.get("ratings"):
        rows.append(
            ("ratings", ", ".join(f"{name(r)}: {v:g}" for r, v in sorted(payload["ratings"].items())))
        )
    if payload.get("thumbs"):
        rows.append(
            (
                "thumbs",
                ", ".join(
                    f"{name(r)}: {'up' if v else 'down'}" for r, v in sorted(payload["thumbs"].items())
                ),
            )
        )
    if payload.get("critique"):
        rows.append(("critique", payload["critique"]))
    if payload.get("edit"):
        rows.append((f"edit of {name(payload['edit']['response_id'])}", payload["edit"]["text"]))
    return rows


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return "\n\n".join(f"**{m.get('role', 'user')}:** {m.get('content', '')}" for m in prompt)
    return str(prompt)


def _short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def review_data(
    s: Session,
    cid: Id,
    by: By = "item",
    max_agreement: float | None = None,
    annotator: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Items that have judgments or notes, each with its responses (models named), judgments
    (rejected ones included), agreement and notes; filtered, ordered and paged as asked.

    by="annotator" adds `annotators`: [{name, judgments: [judgment + item_id]}] over the page's items."""
    quality = _quality()
    judgments = campaign_judgments(s, cid, include_rejected=True)
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in judgments:
        by_item[j["item_id"]].append(j)
    notes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for note, who in s.execute(
        select(ItemNote, User.name)
        .join(User, User.id == ItemNote.user_id)
        .where(ItemNote.campaign_id == cid)
        .order_by(ItemNote.id)
    ):
        notes[note.item_id].append(
            {
                "id": note.id,
                "kind": note.kind,
                "author": who,
                "text": note.text,
                "created_at": note.created_at.isoformat() + "Z",
            }
        )
    item_ids = sorted(set(by_item) | set(notes))
    items_by_id = (
        {
            i.id: i
            for i in s.scalars(
                select(Item).options(selectinload(Item.responses)).where(Item.id.in_(item_ids))
            )
        }
        if item_ids
        else {}
    )
    rows = []
    for iid in item_ids:
        item = items_by_id[iid]
        js = by_item.get(iid, [])
        if annotator is not None and not any(j["annotator"] == annotator for j in js):
            continue
        live = [j for j in js if j["review"] != "rejected"]
        agreement = quality.item_agreement(live)
        if max_agreement is not None and (agreement is None or agreement > max_agreement):
            continue
        label = {r.id: LABELS[i % 26] for i, r in enumerate(item.responses)}
        rows.append(
            {
                "item_id": iid,
                "prompt": item.prompt,
                "prompt_text": _short(_prompt_text(item.prompt)),
                "is_gold": item.gold is not None,
                "agreement": agreement,
                "responses": [
                    {
                        "id": r.id,
                        "label": label[r.id],
                        "model": r.model,
                        "text": r.text,
                        "media_id": r.media_id,
                    }
                    for r in item.responses
                ],
                "judgments": [
                    {
                        "judgment_id": j["judgment_id"],
                        "annotator": j["annotator"],
                        "review": j["review"],
                        "payload": j["payload"],
                        "lines": judgment_lines(j["payload"], label),
                    }
                    for j in js
                ],
                "notes": notes.get(iid, []),
                "problems": sum(n["kind"] == "problem" for n in notes.get(iid, [])),
            }
        )
    if by == "agreement":  # least agreement first; items nobody compared twice go last
        rows.sort(key=lambda r: (r["agreement"] is None, r["agreement"] or 0.0, r["item_id"]))
    total = len(rows)
    page = rows[offset : offset + limit]
    for row in page:  # Markdown is rendered for the shown page only
        row["prompt_html"] = render_markdown(_prompt_text(row["prompt"]))
        for r in row["responses"]:
            r["html"] = render_markdown(r["text"])
    out: dict[str, Any] = {"by": by, "total": total, "offset": offset, "limit": limit, "items": page}
    if by == "annotator":
        per: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in page:
            for j in row["judgments"]:
                if annotator is None or j["annotator"] == annotator:
                    per[j["annotator"]].append(
                        {**j, "item_id": row["item_id"], "prompt_text": row["prompt_text"]}
                    )
        out["annotators"] = [{"name": a, "judgments": per[a]} for a in sorted(per)]
    return out


def set_review(s: Session, jid: int, review: str | None, reviewer_id: int) -> Judgment:
    j = s.get(Judgment, jid, with_for_update=True)
    if j is None or j.undone:
        raise HTTPException(404, f"judgment {jid} not found")
    j.review = review
    j.reviewed_by = reviewer_id if review else None
    j.reviewed_at = utcnow() if review else None
    return j


def add_routes(app: FastAPI, store: Store) -> None:
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

    @app.get("/api/campaigns/{cid}/review", tags=["review"])
    def review(
        cid: Id,
        admin: AdminUser,
        by: By = Query("item", description="item | annotator | agreement (least agreement first)"),
        max_agreement: float | None = Query(
            None, ge=0, le=1, description="only items with agreement <= this"
        ),
        annotator: str | None = Query(None, max_length=200, description="only items this annotator judged"),
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict[str, Any]:
        """Judgments for review (rejected ones included), with item agreement and notes."""
        with store.read() as s:
            get_campaign(s, cid, admin)
            return review_data(s, cid, by, max_agreement, annotator, limit, offset)

    @app.get("/api/campaigns/{cid}/review.html", tags=["review"], response_class=HTMLResponse)
    def review_html(
        request: Request,
        cid: Id,
        admin: AdminUser,
        by: By = Query("item"),
        max_agreement: float | None = Query(None, ge=0, le=1),
        annotator: str | None = Query(None, max_length=200),
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> HTMLResponse:
        """The review list as server-rendered HTML (the review page's body)."""
        with store.read() as s:
            c = get_campaign(s, cid, admin)
            data = review_data(s, cid, by, max_agreement, annotator, limit, offset)
            campaign = {"id": c.id, "name": c.name}
        return templates.TemplateResponse(
            request,
            "fragments/review.html",
            {"data": data, "campaign": campaign, "max_agreement": max_agreement},
        )

    @app.get("/api/campaigns/{cid}/report.html", tags=["admin"], response_class=HTMLResponse)
    def report_html(request: Request, cid: Id, admin: AdminUser) -> HTMLResponse:
        """The quality report as server-rendered HTML (the report page's body)."""
        with store.read() as s:
            c = get_campaign(s, cid, admin)
            report = _quality().quality_report(campaign_judgments(s, cid))
            feedback_types = list(c.feedback_types)
        return templates.TemplateResponse(
            request, "fragments/report.html", {"report": report, "feedback_types": feedback_types, "cid": cid}
        )

    @app.post("/api/judgments/{jid}/review", tags=["review"])
    def review_judgment(jid: Id, body: ReviewIn, admin: AdminUser) -> dict[str, Any]:
        """Accept or reject a judgment (null: back to unreviewed). Rejected ones leave every export."""
        with store.write() as s:
            j = set_review(s, jid, body.review, admin.id)
            return {"judgment_id": j.id, "review": j.review}

    @app.post("/api/items/{item_id}/comments", tags=["review"])
    def comment(item_id: Id, body: NoteIn, admin: AdminUser) -> dict[str, Any]:
        """An admin's comment on an item (shown on the review page)."""
        with store.write() as s:
            item = s.get(Item, item_id)
            if item is None:
                raise HTTPException(404, f"item {item_id} not found")
            note = ItemNote(
                campaign_id=item.campaign_id,
                item_id=item.id,
                user_id=admin.id,
                kind="comment",
                text=body.text,
            )
            s.add(note)
            s.flush()
            return {"id": note.id, "item_id": item.id, "kind": note.kind, "text": note.text}

    @app.post("/api/tasks/{task_id}/problem", tags=["annotation"])
    def report_problem(task_id: Id, body: NoteIn, user: CurrentUser) -> dict[str, Any]:
        """ "Can't judge / report a problem": stores the annotator's reason for the admins' review
        page and skips the task like POST /api/tasks/{task_id}/skip (its item goes to another
        annotator)."""
        with store.write() as s:
            a = own_task(s, task_id, user, lock=True)
            if a.status == "done":
                raise HTTPException(
                    409, f"task {task_id} is already submitted; undo it before reporting a problem"
                )
            note = ItemNote(
                campaign_id=a.campaign_id, item_id=a.item_id, user_id=user.id, kind="problem", text=body.text
            )
            s.add(note)
            skip_task(s, a)
            s.flush()
            return {"task_id": a.id, "status": a.status, "note_id": note.id}
