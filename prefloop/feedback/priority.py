"""Item priorities for active selection: which items annotators see first.

`PATCH /api/campaigns/{cid}/items/priority` with `{"priorities": {"<item id>": 0.93, ...}}` sets
(or, with null, clears) the priority of items of campaign `cid`; items can also carry a
`priority` when they are added. An annotator's next task is the pending one whose item has the
highest priority (items without one come last, ties by task order), so a selector's scores
(`prefloop.teachers.selection.priorities`: disagreement of a reward-model ensemble, entropy,
UCB) decide what people label first. Assignment itself (who gets which item) is unchanged.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import select

from prefloop.feedback.app import Id, get_campaign
from prefloop.feedback.auth import AdminUser
from prefloop.feedback.schemas import PrioritiesIn
from prefloop.feedback.store import Item, Store


def add_routes(app: FastAPI, store: Store) -> None:
    @app.patch("/api/campaigns/{cid}/items/priority", tags=["admin"])
    def set_priorities(cid: Id, body: PrioritiesIn, admin: AdminUser) -> dict[str, Any]:
        """Set item priorities (higher = served first; null clears); unknown item ids are a 404."""
        with store.write() as s:
            get_campaign(s, cid, admin)
            wanted = set(body.priorities)
            items = {
                i.id: i for i in s.scalars(select(Item).where(Item.campaign_id == cid, Item.id.in_(wanted)))
            }
            missing = sorted(wanted - set(items))
            if missing:
                raise HTTPException(404, f"item(s) {missing} not found in campaign {cid}")
            for item_id, p in body.priorities.items():
                items[item_id].priority = p
            return {"updated": len(items)}
