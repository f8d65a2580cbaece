"""The store on SQLite and PostgreSQL: migrations, constraints, assignment, the stats hand-off."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from prefloop.feedback.app import insert_items, join_annotators
from prefloop.feedback.store import (
    Assignment,
    Base,
    Campaign,
    Judgment,
    Store,
    User,
    alembic_config,
    campaign_judgments,
    current_revision,
    upgrade,
    utcnow,
)


def _items(n: int, k: int = 3, gold_every: int = 0) -> list[dict]:
    items = []
    for i in range(n):
        item = {"prompt": f"p{i}", "responses": [{"text": f"p{i} r{j}", "model": f"m{j}"} for j in range(k)]}
        if gold_every and i % gold_every == 0:
            item["gold"] = {"chosen": 0}
        items.append(item)
    return items


def _campaign(store: Store, n_items: int, annotators: list[str], overlap: int, gold_every: int = 0) -> int:
    with store.write() as s:
        c = Campaign(
            name="c",
            feedback_types=["ranking", "pairwise", "rating"],
            overlap=overlap,
            anonymous=True,
            rating_lo=1,
            rating_hi=7,
            instructions="",
            created_at=utcnow(),
        )
        s.add(c)
        s.flush()
        insert_items(s, c, _items(n_items, gold_every=gold_every))
        if annotators:
            join_annotators(s, c, annotators)
        return c.id


def _assignments(store: Store, cid: int) -> list[tuple[int, str]]:
    with store.read() as s:
        rows = s.execute(
            select(Assignment.item_id, User.name)
            .join(User, User.id == Assignment.user_id)
            .where(Assignment.campaign_id == cid)
            .order_by(Assignment.item_id, User.name)
        ).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def store(db_url: str):
    upgrade(db_url)
    s = Store(db_url)
    yield s
    s.dispose()


def test_upgrade_again_keeps_data_and_stays_at_head(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    upgrade(db_url)
    head = current_revision(db_url)
    assert head == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    store = Store(db_url)
    cid = _campaign(store, 5, ["alice", "bob"], overlap=2)
    before = _assignments(store, cid)
    store.dispose()
    upgrade(db_url)  # what `prefloop serve` does on every start
    assert current_revision(db_url) == head
    store = Store(db_url)
    assert _assignments(store, cid) == before
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 2
    store.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    """alembic's autogenerate finds nothing to add: the migration creates exactly the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(db_url)
    store = Store(db_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    store.dispose()
    assert diff == []


def test_sqlite_connection_settings(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    store = Store(url)
    with store.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.dispose()


def test_idempotency_key_unique_per_annotator(store: Store) -> None:
    cid = _campaign(store, 2, ["alice", "bob"], overlap=2)
    with store.read() as s:
        tasks = s.execute(
            select(Assignment.id, Assignment.item_id, Assignment.user_id)
            .where(Assignment.campaign_id == cid)
            .order_by(Assignment.id)
        ).all()

    def judgment(task, key):
        return Judgment(
            assignment_id=task[0],
            campaign_id=cid,
            item_id=task[1],
            user_id=task[2],
            idempotency_key=key,
            payload={},
            undone=False,
            created_at=utcnow(),
        )

    by_user = {}
    for t in tasks:
        by_user.setdefault(t[2], []).append(t)
    (_u1, (t1a, t1b)), (_u2, (t2a, _)) = sorted(by_user.items())
    with store.write() as s:
        s.add(judgment(t1a, "k"))
        s.add(judgment(t2a, "k"))  # same key, another annotator: fine
    with pytest.raises(IntegrityError), store.write() as s:
        s.add(judgment(t1b, "k"))
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Judgment)) == 2


def test_foreign_keys_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError), store.write() as s:
        s.add(Assignment(campaign_id=999, item_id=999, user_id=999, status="pending", updated_at=utcnow()))


def test_assignment_overlap_balanced_and_deterministic(db_url: str, tmp_path) -> None:
    upgrade(db_url)
    store = Store(db_url)
    cid = _campaign(store, 10, ["a", "b", "c"], overlap=2)
    rows = _assignments(store, cid)
    store.dispose()
    per_item = Counter(item for item, _ in rows)
    assert set(per_item.values()) == {2}  # every item to k distinct annotators
    load = Counter(name for _, name in rows)
    assert sum(load.values()) == 20 and max(load.values()) - min(load.values()) <= 1
    # Same inputs on a fresh database: the same assignment (up to item id offsets).
    other = f"sqlite:///{tmp_path / 'again.db'}"
    upgrade(other)
    store2 = Store(other)
    cid2 = _campaign(store2, 10, ["a", "b", "c"], overlap=2)
    rows2 = _assignments(store2, cid2)
    store2.dispose()
    base1, base2 = min(i for i, _ in rows), min(i for i, _ in rows2)
    assert [(i - base1, n) for i, n in rows] == [(i - base2, n) for i, n in rows2]


def test_late_annotators_get_a_fair_share(store: Store) -> None:
    cid = _campaign(store, 9, ["a"], overlap=1)
    assert Counter(n for _, n in _assignments(store, cid)) == {"a": 9}
    with store.write() as s:
        join_annotators(s, s.get(Campaign, cid), ["b", "c"])
    rows = _assignments(store, cid)
    assert Counter(n for _, n in rows) == {"a": 3, "b": 3, "c": 3}
    assert set(Counter(i for i, _ in rows).values()) == {1}


def test_overlap_larger_than_team_is_topped_up_later(store: Store) -> None:
    cid = _campaign(store, 3, ["a"], overlap=2)
    assert len(_assignments(store, cid)) == 3
    with store.write() as s:
        join_annotators(s, s.get(Campaign, cid), ["b"])
    rows = _assignments(store, cid)
    assert set(Counter(i for i, _ in rows).values()) == {2}


def test_gold_items_go_to_every_annotator(store: Store) -> None:
    cid = _campaign(store, 6, ["a", "b", "c"], overlap=1, gold_every=3)  # items 0 and 3 are gold
    with store.read() as s:
        from prefloop.feedback.store import Item

        gold_ids = set(s.scalars(select(Item.id).where(Item.campaign_id == cid, Item.gold.is_not(None))))
    rows = _assignments(store, cid)
    per_item = Counter(i for i, _ in rows)
    assert len(gold_ids) == 2
    assert all(per_item[i] == 3 for i in gold_ids)
    assert all(per_item[i] == 1 for i in per_item if i not in gold_ids)


def test_campaign_judgments_hand_off(store: Store) -> None:
    cid = _campaign(store, 2, ["alice"], overlap=1, gold_every=2)
    with store.write() as s:
        tasks = s.scalars(
            select(Assignment).where(Assignment.campaign_id == cid).order_by(Assignment.id)
        ).all()
        for n, t in enumerate(tasks):
            s.add(
                Judgment(
                    assignment_id=t.id,
                    campaign_id=cid,
                    item_id=t.item_id,
                    user_id=t.user_id,
                    idempotency_key=f"k{n}",
                    payload={"ratings": {"1": 3}},
                    undone=(n == 1),
                    created_at=utcnow(),
                )
            )
    with store.read() as s:
        out = campaign_judgments(s, cid)
    assert len(out) == 1  # the undone one is left out
    j = out[0]
    assert set(j) == {
        "judgment_id",
        "item_id",
        "annotator",
        "is_gold",
        "gold",
        "prompt",
        "responses",
        "payload",
        "review",
    }
    assert j["review"] is None
    assert j["annotator"] == "alice" and j["is_gold"] is True and j["gold"] == {"chosen": 0}
    assert [r["model"] for r in j["responses"]] == ["m0", "m1", "m2"]
    assert j["prompt"] == "p0" and j["payload"] == {"ratings": {"1": 3}}


def test_migration_0002_keeps_judgments_and_adds_review(db_url: str) -> None:
    """An 0001 database with a judgment upgrades in place: the judgment survives, unreviewed."""
    upgrade(db_url, "0001")
    store = Store(db_url)
    with store.write() as s:
        s.execute(
            text("INSERT INTO users (id, name, role, created_at) VALUES (1, 'u', 'annotator', '2026-01-01');")
        )
        s.execute(
            text(
                "INSERT INTO campaigns (id, name, feedback_types, overlap, anonymous, rating_lo, rating_hi,"
                " instructions, created_at) VALUES (1, 'c', '[\"ranking\"]', 1, true, 1, 7, '', '2026-01-01')"
            )
        )
        s.execute(
            text(
                "INSERT INTO items (id, campaign_id, prompt, created_at) VALUES (1, 1, '\"p\"', '2026-01-01')"
            )
        )
        s.execute(
            text(
                "INSERT INTO assignments (id, campaign_id, item_id, user_id, status, updated_at)"
                " VALUES (1, 1, 1, 1, 'done', '2026-01-01')"
            )
        )
        s.execute(
            text(
                "INSERT INTO judgments (id, assignment_id, campaign_id, item_id, user_id, idempotency_key,"
                " payload, undone, created_at) VALUES (7, 1, 1, 1, 1, 'k', '{\"ranking\": []}', false, '2026-01-01')"
            )
        )
    store.dispose()
    upgrade(db_url)
    store = Store(db_url)
    with store.read() as s:
        j = s.get(Judgment, 7)
        assert (j.payload, j.review, j.reviewed_by) == ({"ranking": []}, None, None)
        assert [r["judgment_id"] for r in campaign_judgments(s, 1)] == [7]
    store.dispose()
