"""Who annotates what: balanced, deterministic assignment of items to a campaign's annotators.

Rules
- A regular item goes to `overlap` (k) distinct annotators; a gold item (known answer, for
  calibration) goes to every annotator of the campaign, so each one gets a gold accuracy.
- Least-loaded first: each item takes the annotators with the fewest tasks in this campaign,
  ties broken by user id, items handled in id order. Same inputs -> same assignment.
- A skipped task does not count towards k: the item goes to one more annotator (one who has
  not had it yet, when there is one), so skips do not leave items short of judgments.
- Runs whenever items or annotators are added and when a task is skipped. Items short of their
  k annotators (because the campaign had fewer than k, or someone skipped) are topped up; then untouched tasks (pending, never
  submitted) move from the most- to the least-loaded annotator until loads differ by <= 1,
  so an annotator who joins late gets a fair share of the remaining work.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from prefloop.feedback.store import Assignment, Campaign, CampaignAnnotator, Item, Judgment, utcnow


def annotator_ids(session: Session, campaign_id: int) -> list[int]:
    rows = session.scalars(
        select(CampaignAnnotator.user_id).where(CampaignAnnotator.campaign_id == campaign_id)
    )
    return sorted(rows)


def _current(
    session: Session, campaign_id: int
) -> tuple[dict[int, set[int]], dict[int, int], dict[int, int]]:
    """(item id -> user ids that ever had it, item id -> tasks not skipped, user id -> number of
    tasks) for the campaign."""
    by_item: dict[int, set[int]] = defaultdict(set)
    active: dict[int, int] = defaultdict(int)
    load: dict[int, int] = defaultdict(int)
    for item_id, user_id, status in session.execute(
        select(Assignment.item_id, Assignment.user_id, Assignment.status).where(
            Assignment.campaign_id == campaign_id
        )
    ):
        by_item[item_id].add(user_id)
        active[item_id] += status != "skipped"
        load[user_id] += 1
    return by_item, active, load


def assign(session: Session, campaign: Campaign, rebalance: bool = True) -> int:
    """Top up every item to its target number of annotators, then rebalance (unless told not to:
    a skip only tops up, so skipping never brings someone more of others' work); returns tasks
    created."""
    users = annotator_ids(session, campaign.id)
    if not users:
        return 0
    by_item, active, load = _current(session, campaign.id)
    for u in users:
        load.setdefault(u, 0)
    created = 0
    items = session.execute(
        select(Item.id, Item.gold).where(Item.campaign_id == campaign.id).order_by(Item.id)
    ).all()
    for item_id, gold in items:
        target = len(users) if gold is not None else min(campaign.overlap, len(users))
        have = by_item[item_id]
        need = min(target - active[item_id], len(users) - len(have))
        if need <= 0:
            continue
        candidates = sorted((u for u in users if u not in have), key=lambda u: (load[u], u))
        for u in candidates[:need]:
            session.add(Assignment(campaign_id=campaign.id, item_id=item_id, user_id=u, status="pending"))
            have.add(u)
            load[u] += 1
            created += 1
    session.flush()
    if rebalance:
        _rebalance(session, campaign.id, users, by_item, load)
    return created


def _movable(session: Session, campaign_id: int) -> dict[int, list[Assignment]]:
    """Pending, never-submitted tasks of non-gold items, per user, newest first (moved first)."""
    judged = select(Judgment.assignment_id).where(Judgment.campaign_id == campaign_id)
    rows = session.scalars(
        select(Assignment)
        .join(Item, Item.id == Assignment.item_id)
        .where(
            Assignment.campaign_id == campaign_id,
            Assignment.status == "pending",
            Item.gold.is_(None),
            Assignment.id.not_in(judged),
        )
        .order_by(Assignment.id.desc())
    )
    out: dict[int, list[Assignment]] = defaultdict(list)
    for a in rows:
        out[a.user_id].append(a)
    return out


def _rebalance(
    session: Session, campaign_id: int, users: list[int], by_item: dict[int, set[int]], load: dict[int, int]
) -> None:
    movable = _movable(session, campaign_id)
    while True:
        receiver = min(users, key=lambda u: (load[u], u))
        moved = False
        for donor in sorted(users, key=lambda u: (-load[u], u)):
            if load[donor] - load[receiver] <= 1:
                break
            task = next((a for a in movable[donor] if receiver not in by_item[a.item_id]), None)
            if task is None:
                continue
            movable[donor].remove(task)
            by_item[task.item_id].discard(donor)
            by_item[task.item_id].add(receiver)
            task.user_id = receiver
            task.updated_at = utcnow()
            load[donor] -= 1
            load[receiver] += 1
            moved = True
            break
        if not moved:
            break
    session.flush()


def task_counts(session: Session | Connection, campaign_id: int, user_id: int) -> dict[str, int]:
    """{"done", "submitted", "skipped", "total"} for one annotator; done = no longer pending."""
    counts = dict(
        session.execute(
            select(Assignment.status, func.count())
            .where(Assignment.campaign_id == campaign_id, Assignment.user_id == user_id)
            .group_by(Assignment.status)
        ).all()
    )
    submitted, skipped = counts.get("done", 0), counts.get("skipped", 0)
    return {
        "done": submitted + skipped,
        "submitted": submitted,
        "skipped": skipped,
        "total": submitted + skipped + counts.get("pending", 0),
    }
