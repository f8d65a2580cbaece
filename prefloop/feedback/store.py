"""The feedback store: SQLAlchemy 2.0 models, engine setup, migrations and the stats hand-off.

Tables (one campaign = prompts x candidate responses shown to annotators):

    users               accounts; role "admin" | "annotator"; password and tokens stored hashed
    api_tokens          bearer tokens (sha256 digests) - a user may hold several (login sessions)
    campaigns           feedback types, overlap k, anonymity, rating scale, instructions
    campaign_annotators which users annotate which campaign
    items               one prompt (str or chat messages) + optional gold answer
    responses           candidate responses; model name and checkpoint kept for leaderboards; a
                        response may show a media file (a clip) instead of / beside its text
    media               images and video clips of a campaign (bytes, sniffed content type, sha256;
                        one row per distinct file in a campaign), served only to annotators of
                        tasks that show them
    assignments         item x annotator, status pending | done | skipped (a "task")
    judgments           one submission: JSON payload, idempotency key unique per annotator,
                        undone flag (undo keeps the row, so nothing is ever deleted), the
                        admin's review (accepted | rejected | none; rejected ones are never exported)
    item_notes          per-item notes: an admin's review comment, or an annotator's
                        "can't judge / report a problem" (kind comment | problem)
    server_settings     key/value: the secret behind annotators' opaque response ids

SQLite (the default) runs in WAL mode with a busy timeout, foreign keys on and synchronous=FULL,
so an acknowledged commit survives a crash of the process or the machine. Write requests
open their SQLite transaction with BEGIN IMMEDIATE (`write_session`) so concurrent writers
queue on the lock instead of failing to upgrade a read snapshot. PostgreSQL URLs
(`postgresql://` or `postgresql+psycopg://`) use psycopg 3.

Schema changes go through alembic (`upgrade(db_url)`); `prefloop serve` runs it on start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FEEDBACK_TYPES = ("pairwise", "ranking", "rating", "binary", "critique", "edit")
TASK_STATUSES = ("pending", "done", "skipped")
REVIEW_STATES = ("accepted", "rejected")  # a judgment's review; NULL = not reviewed
NOTE_KINDS = ("comment", "problem")
# Media kinds a campaign may hold, sniffed from the file's first bytes (`feedback.media.sniff`).
MEDIA_TYPES = ("image/gif", "image/png", "image/webp", "video/mp4", "video/webm")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


Index("uq_users_name_lower", func.lower(User.name), unique=True)  # names are case-insensitive


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    user: Mapped[User] = relationship()


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    feedback_types: Mapped[list] = mapped_column(JSON, nullable=False)
    overlap: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    anonymous: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    rating_lo: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    rating_hi: Mapped[float] = mapped_column(Float, nullable=False, default=7.0)
    instructions: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class CampaignAnnotator(Base):
    __tablename__ = "campaign_annotators"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    joined_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True
    )
    prompt: Mapped[Any] = mapped_column(JSON, nullable=False)  # str or list of chat messages
    gold: Mapped[dict | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )  # known answer (calibration)
    priority: Mapped[float | None] = mapped_column(Float, nullable=True)  # higher = asked first (None: last)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    responses: Mapped[list[Response]] = relationship(order_by="Response.position", back_populates="item")


class Media(Base):
    """An image or video clip uploaded to a campaign (`POST /api/campaigns/{cid}/media`).

    `content_type` is what the server sniffed from the bytes (never what the client said), one of
    `MEDIA_TYPES`; equal files in one campaign are stored once (unique sha256 per campaign)."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("campaign_id", "sha256", name="uq_media_campaign_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True
    )
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    content_type: Mapped[str] = mapped_column(String(50), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Response(Base):
    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)  # "" for a clip without a caption
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="CASCADE"), nullable=True, index=True
    )  # a clip shown with (or instead of) the text
    model: Mapped[str | None] = mapped_column(String(500), nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    item: Mapped[Item] = relationship(back_populates="responses")


class Assignment(Base):
    """A task: one item shown to one annotator."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignment_item_user"),
        Index("ix_assignments_campaign_user_status", "campaign_id", "user_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    item: Mapped[Item] = relationship()


class Judgment(Base):
    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_judgment_user_key"),
        Index("ix_judgments_campaign_user", "campaign_id", "user_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), nullable=False
    )
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    undone: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    review: Mapped[str | None] = mapped_column(String(20), nullable=True)  # accepted | rejected
    reviewed_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ItemNote(Base):
    """A note on an item: an admin's comment on the review page, or an annotator's problem
    report ("can't judge": broken prompt, unreadable response, ...) sent instead of a judgment."""

    __tablename__ = "item_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # comment | problem
    text: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class ServerSetting(Base):
    __tablename__ = "server_settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


def server_setting(session: Session, key: str) -> str:
    row = session.get(ServerSetting, key)
    if row is None:
        raise RuntimeError(f"server setting {key!r} missing: run the migrations (prefloop serve does)")
    return row.value


# ---------------------------------------------------------------------------------------------
# Engine and sessions


def normalize_url(db_url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver we ship), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if db_url.startswith(prefix):
            return "postgresql+psycopg://" + db_url[len(prefix) :]
    return db_url


def is_sqlite(db_url: str) -> bool:
    return db_url.startswith("sqlite")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The pysqlite driver's own implicit BEGIN is switched off; `_sqlite_begin` emits it instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged commit is on disk
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front: a deferred transaction that read first and writes
    # later fails with SQLITE_BUSY_SNAPSHOT under WAL when another writer got in between.
    conn.exec_driver_sql(
        "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
    )


def make_engine(db_url: str, **kwargs: Any) -> Engine:
    """An engine with the store's connection settings (SQLite pragmas, PG pool pre-ping)."""
    db_url = normalize_url(db_url)
    if is_sqlite(db_url):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if "poolclass" not in kwargs:
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 20)
        engine = create_engine(db_url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(db_url, **kwargs)


class Store:
    """An engine plus session factory; `read()` for queries, `write()` for one atomic change."""

    def __init__(self, db_url: str, engine: Engine | None = None) -> None:
        self.db_url = normalize_url(db_url)
        self.engine = engine or make_engine(self.db_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing writers of this process on a lock wakes the
        # next one as soon as the previous commits; waiting inside SQLite's busy handler sleeps
        # with back-off instead, which made p99 latency under load seconds long.
        self._write_lock = threading.Lock() if is_sqlite(self.db_url) else contextlib.nullcontext()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls everything back on any exception."""
        with self._write_lock, self._sessions() as session:
            if is_sqlite(self.db_url):
                session.connection(execution_options={"sqlite_immediate": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def read_core(self) -> Iterator[Connection]:
        """A plain connection for the hot read paths (token lookup, /next, submit's checks):
        Core queries without an ORM session's bookkeeping."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write_core(self) -> Iterator[Connection]:
        """`write` for Core statements: one transaction on a plain connection, same lock and
        BEGIN IMMEDIATE; commits on success, rolls back on any exception."""
        with self._write_lock, self.engine.connect() as conn:
            if is_sqlite(self.db_url):
                conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


# ---------------------------------------------------------------------------------------------
# Migrations


def alembic_config(db_url: str) -> Any:
    """An alembic Config pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(db_url).replace("%", "%%"))
    return cfg


def upgrade(db_url: str, revision: str = "head") -> None:
    """`alembic upgrade head` on `db_url`: creates a new DB, migrates an old one in place."""
    from alembic import command

    db_url = normalize_url(db_url)
    if is_sqlite(db_url):
        path = db_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(db_url, poolclass=_null_pool())
    try:
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def current_revision(db_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db_url, poolclass=_null_pool())
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


# ---------------------------------------------------------------------------------------------
# Hand-off to the pure statistics (prefloop.feedback.quality)


def response_dicts(item: Item) -> list[dict[str, Any]]:
    out = []
    for r in item.responses:
        d: dict[str, Any] = {"id": r.id, "model": r.model, "text": r.text}
        if r.media_id is not None:
            d["media_id"] = r.media_id
        out.append(d)
    return out


def campaign_judgments(session: Session, cid: int, include_rejected: bool = False) -> list[dict[str, Any]]:
    """Every live (not undone) submission of campaign `cid`, oldest first, as plain dicts.

    Judgments an admin rejected on the review page are left out (so out of every export, the
    report and the leaderboard) unless `include_rejected` (the review page itself).

    {"judgment_id", "item_id", "annotator", "is_gold", "gold", "prompt",
     "responses": [{"id", "model", "text"}], "payload": submit body minus idempotency_key,
     "review": None | "accepted" | "rejected"}
    """
    query = (
        select(Judgment, User.name)
        .join(User, User.id == Judgment.user_id)
        .where(Judgment.campaign_id == cid, Judgment.undone.is_(False))
        .order_by(Judgment.id)
    )
    if not include_rejected:
        query = query.where(or_(Judgment.review.is_(None), Judgment.review != "rejected"))
    rows = session.execute(query).all()
    item_ids = sorted({j.item_id for j, _ in rows})
    items: dict[int, Item] = {}
    if item_ids:
        for item in session.scalars(
            select(Item).options(selectinload(Item.responses)).where(Item.id.in_(item_ids))
        ):
            items[item.id] = item
    out = []
    for judgment, annotator in rows:
        item = items[judgment.item_id]
        out.append(
            {
                "judgment_id": judgment.id,
                "item_id": item.id,
                "annotator": annotator,
                "is_gold": item.gold is not None,
                "gold": item.gold,
                "prompt": item.prompt,
                "responses": response_dicts(item),
                "payload": dict(judgment.payload),
                "review": judgment.review,
            }
        )
    return out
