"""The feedback web service: REST API (FastAPI, OpenAPI at /openapi.json, docs at /docs) + pages.

`create_app(db_url)` builds the app over one `Store`. Every request that changes something runs
in exactly one database transaction (`store.write()`): validation errors raise before commit, so
a 4xx never leaves a partial write. Errors are `{"detail": "<clear message>"}`.

Access rules
- no / bad token -> 401; an annotator on an admin endpoint -> 403;
- an annotator asking for a campaign they are not in, or a task that is not theirs -> 404
  (the same answer as for one that does not exist, so ids leak nothing).

Annotators never see database response ids: each task shows its responses under opaque ids
(`TaskIds`: an HMAC of the task and response under a per-database secret), so neither their
order nor their value says which model or file a response came from; the server maps them
back on submit, and stores and exports real ids. Responses of one item with the same text are
shown once (one opaque id for all the copies; a judgment of it counts for every copy).
Anonymous campaigns also hide model names in /next and shuffle the display order per task (by
the same secret); the submit response reveals them.
Submissions carry an idempotency key, unique per annotator: a retry with the same body returns
the first result with duplicate=true and stores nothing; the same key with a different body is
a 409.

The guard (`guard_middleware`, outermost) runs before FastAPI reads anything: an API request
with a body is authenticated from its headers first (401 without reading the body), bodies are
capped (413; `ServerSettings.max_body_mb`), and every response gets the security headers
(Content-Security-Policy, frame protection). /docs serves Swagger UI from the
`swagger-ui-bundle` package's files (no CDN).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.feedback import assignment as assign_mod
from prefloop.feedback import auth, export
from prefloop.feedback.auth import AdminUser, CurrentUser, Principal
from prefloop.feedback.media import MediaError, check_media
from prefloop.feedback.rendering import render_markdown
from prefloop.feedback.schemas import (
    INT64_MAX,
    AnnotatorsIn,
    CampaignIn,
    ItemsIn,
    LoginIn,
    SubmitIn,
    UserIn,
    validate_submission,
)
from prefloop.feedback.store import (
    ApiToken,
    Assignment,
    Campaign,
    CampaignAnnotator,
    Item,
    Judgment,
    Media,
    Store,
    User,
    campaign_judgments,
    server_setting,
    upgrade,
    utcnow,
)
from prefloop.feedback.store import (
    Response as ResponseRow,
)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PAGES = {
    "login": "login.html",
    "index": "index.html",
    "annotate": "annotate.html",
    "leaderboard": "leaderboard.html",
    "report": "report.html",
    "admin": "admin.html",
    "campaign": "campaign.html",
    "review": "review.html",
}


Id = Annotated[int, PathParam(ge=1, le=INT64_MAX, description="a positive 64-bit id")]
Seed = Annotated[int, Query(ge=0, le=2**32 - 1, description="bootstrap seed, 0..2^32-1")]
Bootstraps = Annotated[int, Query(ge=0, le=10_000)]


@dataclass(frozen=True)
class ServerSettings:
    """What an operator tunes (`prefloop serve` flags of the same names)."""

    token_ttl_hours: float = 720.0
    """Tokens stop working this long after they were issued (0 = never)."""
    max_body_mb: float = 32.0
    """Largest request body accepted (413 above it); logins are capped at 64 KiB."""
    login_max_failures: int = 5
    """Failed logins for one user name within `login_window_s` before it is locked."""
    login_address_max_failures: int = 50
    """Failed logins from one client address within `login_window_s` before it is locked."""
    login_window_s: float = 900.0
    """Window of the failure counts (seconds)."""
    login_lockout_s: float = 900.0
    """How long a locked name or address answers 429 (seconds)."""
    auth_cache_s: float = 2.0
    """Seconds a checked token is remembered (`auth.TokenCache`; revocations made through this
    server apply at once, those from the CLI or another worker within this time; 0 = off)."""

    @property
    def token_ttl(self) -> dt.timedelta | None:
        return dt.timedelta(hours=self.token_ttl_hours) if self.token_ttl_hours > 0 else None

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


LOGIN_BODY_LIMIT = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Opaque response ids


@dataclass
class Shown:
    """One task as its annotator sees it: opaque ids in display order, copies merged.

    `real[shown_id]` lists the database ids of the responses shown under `shown_id` (more than
    one when responses of the item have the same text)."""

    ids: list[int]
    text: dict[int, str]
    model: dict[int, str | None]
    real: dict[int, list[int]] = field(default_factory=dict)
    media: dict[int, tuple[int, str]] = field(default_factory=dict)
    """shown id -> (media id, content type) for responses that show a clip"""

    def display_of(self) -> dict[int, int]:
        return {r: d for d, reals in self.real.items() for r in reals}


class TaskIds:
    """Opaque per-task response ids: 9-digit numbers from HMAC-SHA256(secret, "task:response")."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, task_id: int, response_id: int) -> int:
        msg = f"{task_id}:{response_id}".encode()
        return int.from_bytes(hmac.new(self._key, msg, hashlib.sha256).digest()[:8], "big")

    def shown(self, task_id: int, item: ItemView, shuffle: bool) -> Shown:
        groups: dict[tuple[str, int | None], list[SimpleNamespace]] = {}
        for r in item.responses:  # position order; the first copy of a text (and clip) stands for all
            groups.setdefault((r.text, r.media_id), []).append(r)
        out = Shown([], {}, {})
        for copies in groups.values():
            shown_id = 100_000_000 + self._mac(task_id, copies[0].id) % 900_000_000
            while shown_id in out.real:  # a collision in 9 digits: take the next free number
                shown_id += 1
            out.ids.append(shown_id)
            out.real[shown_id] = [r.id for r in copies]
            out.text[shown_id] = copies[0].text
            if copies[0].media_id is not None:
                out.media[shown_id] = (copies[0].media_id, copies[0].media_type)
            models = list(dict.fromkeys(r.model for r in copies if r.model))
            out.model[shown_id] = ", ".join(models) if models else None
        if shuffle:
            out.ids.sort(key=lambda d: self._mac(task_id, -d))
        return out


def payload_to_real(payload: dict[str, Any], shown: Shown) -> dict[str, Any]:
    """A submission in shown ids -> the stored payload in database ids (copies get the same answer)."""
    real = shown.real
    out = dict(payload)
    if "pairwise" in out:
        out["pairwise"] = {
            **out["pairwise"],
            "a": real[out["pairwise"]["a"]][0],
            "b": real[out["pairwise"]["b"]][0],
        }
    if "ranking" in out:
        out["ranking"] = [[r for d in group for r in real[d]] for group in out["ranking"]]
    for key in ("ratings", "thumbs"):
        if key in out:
            out[key] = {str(r): v for d, v in out[key].items() for r in real[int(d)]}
    if "edit" in out:
        out["edit"] = {**out["edit"], "response_id": real[out["edit"]["response_id"]][0]}
    return out


def payload_to_shown(payload: dict[str, Any], shown: Shown) -> dict[str, Any]:
    """A stored payload -> the same answer in the task's shown ids (for undo's pre-fill)."""
    disp = shown.display_of()
    out = dict(payload)
    if "pairwise" in out:
        out["pairwise"] = {
            **out["pairwise"],
            "a": disp[out["pairwise"]["a"]],
            "b": disp[out["pairwise"]["b"]],
        }
    if "ranking" in out:
        out["ranking"] = [list(dict.fromkeys(disp[r] for r in group)) for group in out["ranking"]]
    for key in ("ratings", "thumbs"):
        if key in out:
            out[key] = {str(disp[int(r)]): v for r, v in out[key].items()}
    if "edit" in out:
        out["edit"] = {**out["edit"], "response_id": disp[out["edit"]["response_id"]]}
    return out


# ---------------------------------------------------------------------------------------------
# Views: rows -> JSON


def campaign_view(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "feedback_types": list(c.feedback_types),
        "overlap": c.overlap,
        "anonymous": c.anonymous,
        "rating_scale": [c.rating_lo, c.rating_hi],
        "instructions": c.instructions,
        "instructions_html": render_markdown(c.instructions),
        "created_at": c.created_at.isoformat() + "Z",
    }


def prompt_html(prompt: Any) -> list[dict[str, Any]]:
    """A prompt as [{role, html}] (role None for a plain-text prompt), each rendered from Markdown."""
    if isinstance(prompt, list):
        return [
            {"role": m.get("role", "user"), "html": render_markdown(m.get("content", ""))} for m in prompt
        ]
    return [{"role": None, "html": render_markdown(str(prompt))}]


def task_view(c: Any, a: Any, item: ItemView, ids: TaskIds) -> dict[str, Any]:
    """A task for its annotator, responses under opaque ids (`TaskIds`); `*_html` fields are
    Markdown rendered to sanitized HTML (`rendering.render_markdown`), the raw texts stay for editing."""
    shown = ids.shown(a.id, item, shuffle=c.anonymous)  # deterministic: reloads look the same
    responses = [
        {
            "id": d,
            "text": shown.text[d],
            "html": render_markdown(shown.text[d]),
            "model": None if c.anonymous else shown.model[d],
            "media": (
                {"url": f"/api/tasks/{a.id}/media/{d}", "type": shown.media[d][1]}
                if d in shown.media
                else None
            ),
        }
        for d in shown.ids
    ]
    return {
        "task_id": a.id,
        "item_id": item.id,
        "campaign_id": c.id,
        "prompt": item.prompt,
        "responses": responses,
        "feedback_types": list(c.feedback_types),
        "rating_scale": [c.rating_lo, c.rating_hi],
        "instructions": c.instructions,
        "instructions_html": render_markdown(c.instructions),
        "prompt_html": prompt_html(item.prompt),
        "status": a.status,
    }


# ---------------------------------------------------------------------------------------------
# Lookups that raise the right HTTP error


def get_campaign(session: Session, cid: int, user: Principal, lock: bool = False) -> Campaign:
    """The campaign if `user` may see it: admins see all, annotators the ones they are in (else 404).

    lock=True holds the campaign row (PostgreSQL) so concurrent (re)assignments run one at a time."""
    c = session.get(Campaign, cid, with_for_update=lock or None)
    if c is None or (user.role != "admin" and not is_member(session, cid, user.id)):
        raise HTTPException(404, f"campaign {cid} not found")
    return c


def is_member(session: Session, cid: int, user_id: int) -> bool:
    return session.get(CampaignAnnotator, (cid, user_id)) is not None


def annotated_campaign(session: Session | Connection, cid: int, user: Principal) -> Any:
    """The campaign for annotation endpoints (a row with the campaign's columns as attributes):
    the caller must be one of its annotators.

    Annotators outside it get 404 (as if it did not exist); an admin who is not one of its
    annotators gets 403 with a hint."""
    row = session.execute(  # one query: the campaign and whether the caller is in it
        select(Campaign.__table__, CampaignAnnotator.user_id.label("member"))
        .outerjoin(
            CampaignAnnotator,
            (CampaignAnnotator.campaign_id == Campaign.id) & (CampaignAnnotator.user_id == user.id),
        )
        .where(Campaign.id == cid)
    ).first()
    c, member = (row, row.member is not None) if row is not None else (None, False)
    if c is None or (not member and user.role != "admin"):
        raise HTTPException(404, f"campaign {cid} not found")
    if not member:
        raise HTTPException(
            403,
            f"you are not an annotator of campaign {cid}; an admin can add you with "
            f"POST /api/campaigns/{cid}/annotators",
        )
    return c


def own_task(session: Session, task_id: int, user: Principal, lock: bool = False) -> Assignment:
    query = select(Assignment).where(Assignment.id == task_id)
    if lock:
        query = query.with_for_update()
    a = session.scalars(query).first()
    if a is None or a.user_id != user.id:
        raise HTTPException(404, f"task {task_id} not found")
    return a


@dataclass(frozen=True)
class ItemView:
    """An item with its responses as plain values (read with two Core queries: this is the hot
    path of /next and /submit, and ORM objects cost more than the queries here)."""

    id: int
    prompt: Any
    responses: list[SimpleNamespace]


ITEM_CACHE_SIZE = 20_000


def cached_item(store: Store, session: Session | Connection, item_id: int) -> ItemView:
    """`load_item` through a per-store cache: items and their responses never change once
    stored, and each is read by its k annotators' /next and submit calls."""
    cache: dict[int, ItemView] = store.__dict__.setdefault("_item_cache", {})
    item = cache.get(item_id)
    if item is None:
        item = load_item(session, item_id)
        if len(cache) >= ITEM_CACHE_SIZE:
            cache.clear()
        cache[item_id] = item
    return item


def load_item(session: Session | Connection, item_id: int) -> ItemView:
    prompt = session.execute(select(Item.prompt).where(Item.id == item_id)).scalar_one()
    rows = session.execute(
        select(ResponseRow.id, ResponseRow.text, ResponseRow.model, ResponseRow.media_id, Media.content_type)
        .outerjoin(Media, Media.id == ResponseRow.media_id)
        .where(ResponseRow.item_id == item_id)
        .order_by(ResponseRow.position)
    ).all()
    return ItemView(
        item_id,
        prompt,
        [
            SimpleNamespace(
                id=r.id, text=r.text, model=r.model, media_id=r.media_id, media_type=r.content_type
            )
            for r in rows
        ],
    )


def next_task(
    store: Store, session: Session | Connection, c: Any, user: Principal, ids: TaskIds
) -> dict[str, Any] | None:
    a = session.execute(
        select(Assignment.id, Assignment.item_id, Assignment.status)
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.campaign_id == c.id, Assignment.user_id == user.id, Assignment.status == "pending")
        .order_by(Item.priority.desc().nulls_last(), Assignment.id)  # active selection's priority first
        .limit(1)
    ).first()
    return None if a is None else task_view(c, a, cached_item(store, session, a.item_id), ids)


# ---------------------------------------------------------------------------------------------
# The app


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def create_app(
    db_url: str = "sqlite:///feedback.db", *, migrate: bool = True, settings: ServerSettings | None = None
) -> FastAPI:
    """The FastAPI app over the database at `db_url` (migrated to the latest schema unless told not to)."""
    if migrate:
        upgrade(db_url)
    store = Store(db_url)
    settings = settings or ServerSettings()
    with store.read() as s:
        task_ids = TaskIds(server_setting(s, "response_id_key"))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.dispose()

    app = FastAPI(
        title="prefloop feedback server",
        version="1",
        description="Collect human feedback on model responses; export it as training data. "
        "Authenticate with 'Authorization: Bearer <token>' (POST /api/login gives one; "
        "use the Authorize button here).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.task_ids = task_ids
    app.state.token_cache = auth.TokenCache(settings.auth_cache_s)
    app.state.login_limiter = auth.LoginLimiter(
        settings.login_max_failures, settings.login_window_s, settings.login_lockout_s
    )
    app.state.address_limiter = auth.LoginLimiter(
        settings.login_address_max_failures, settings.login_window_s, settings.login_lockout_s
    )

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(exc), "errors": errors}, status_code=422)

    _api_routes(app, store, task_ids)
    from prefloop.feedback import admin, priority, review  # they build on this module's helpers

    admin.add_routes(app, store)
    review.add_routes(app, store)
    priority.add_routes(app, store)
    _page_routes(app)
    app.add_middleware(GuardMiddleware)
    return app


# ---------------------------------------------------------------------------------------------
# The guard: authentication before the body, body size, security headers

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_UNAUTHENTICATED_POSTS = ("/api/login",)
_PUBLIC = ("/api/login", "/api/health")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Pure ASGI (runs before FastAPI touches the request). Authenticates every /api request but
    login and health from its headers (401 without reading a byte of a body; endpoints reuse the
    answer), refuses bodies over the limit (413, from Content-Length or while reading a chunked
    body), then hands the body on. Adds the security headers to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        csp = (DOCS_CSP if path == "/docs" else CSP).encode()

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in (b"content-security-policy",)]
                message["headers"] = headers + [(b"content-security-policy", csp), *SECURITY_HEADERS]
            await send(message)

        if path.startswith("/api/") and path not in _PUBLIC:
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            user, why = auth.cached_user(scope["app"], header), ""
            if user is None:
                user, why = await anyio.to_thread.run_sync(auth.authenticate, scope["app"], header)
            if user is None:
                await _json_error(send_with_headers, 401, why, ((b"www-authenticate", b"Bearer"),))
                return
            scope.setdefault("state", {})["principal"] = user
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and path.startswith("/api/"):
            app = scope["app"]
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            limit = LOGIN_BODY_LIMIT if path in _UNAUTHENTICATED_POSTS else app.state.settings.max_body_bytes
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _json_error(send_with_headers, 413, _too_large(limit))
                return
            try:
                body = await _read_body(receive, limit)
            except BodyTooLarge:
                await _json_error(send_with_headers, 413, _too_large(limit))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_headers)


def _too_large(limit: int) -> str:
    return (
        f"request body too large: the limit is {limit} bytes "
        "(split the upload, or raise `prefloop serve --max-body-mb`)"
    )


async def _json_error(
    send: Send, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer `{"detail": ...}` from the guard (the body, if any, is never read: close after)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect like the server would

    return replay


def _api_routes(app: FastAPI, store: Store, task_ids: TaskIds) -> None:
    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, Any]:
        with store.read() as s:
            s.execute(select(1))
        return {"ok": True, "db": store.engine.dialect.name}

    # -- accounts ----------------------------------------------------------------------------
    @app.post("/api/login", tags=["auth"])
    def login(body: LoginIn, request: Request) -> dict[str, Any]:
        """A new token for name + password. Failed logins are counted per user name and per
        client address: too many within the window answer 429 (with Retry-After) for a while."""
        keys = ["name:" + body.name.lower(), "addr:" + (request.client.host if request.client else "?")]
        names, addresses = app.state.login_limiter, app.state.address_limiter
        wait = max(names.retry_after(keys[:1]), addresses.retry_after(keys[1:]))
        if wait > 0:
            raise HTTPException(
                429,
                f"too many failed logins for this name or address; try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        # The (deliberately slow) password check runs outside the write transaction, so a login
        # never holds SQLite's write lock while hashing.
        with store.read() as s:
            user = auth.login(s, body.name, body.password)
            if user is None:
                names.failed(keys[:1])
                addresses.failed(keys[1:])
                raise HTTPException(401, "wrong name or password")
            s.expunge(user)
        names.succeeded(keys[0])
        with store.write() as s:
            token = auth.issue_token(s, user)
        return {"token": token, "name": user.name, "role": user.role}

    @app.post("/api/logout", tags=["auth"])
    def logout(request: Request, _user: CurrentUser) -> dict[str, Any]:
        """Revoke the token this request was made with (server-side: it stops working everywhere)."""
        token = auth.bearer_token(request.headers.get("authorization")) or ""
        with store.write() as s:
            s.execute(delete(ApiToken).where(ApiToken.token_hash == auth.hash_token(token)))
        app.state.token_cache.clear()
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(user: CurrentUser) -> dict[str, Any]:
        return {"name": user.name, "role": user.role}

    @app.post("/api/users", tags=["admin"])
    def create_user(body: UserIn, _admin: AdminUser) -> dict[str, Any]:
        password_hash = auth.hash_password(body.password) if body.password else None  # outside the lock
        with store.write() as s:
            if auth.find_user(s, body.name) is not None:
                raise HTTPException(409, f"user {body.name!r} already exists (names are case-insensitive)")
            user, token = auth.create_user(s, body.name, body.role, password_hash=password_hash)
            return {"name": user.name, "role": user.role, "token": token}

    def _user(s: Session, name: str) -> User:
        user = auth.find_user(s, name)
        if user is None:
            raise HTTPException(404, f"user {name!r} not found")
        return user

    @app.post("/api/users/{name}/tokens", tags=["admin"])
    def new_user_token(name: str, _admin: AdminUser) -> dict[str, Any]:
        """Issue another token for a user (e.g. one who lost theirs); older tokens stay valid."""
        with store.write() as s:
            user = _user(s, name)
            return {"name": user.name, "role": user.role, "token": auth.issue_token(s, user)}

    @app.get("/api/users/{name}/tokens", tags=["admin"])
    def list_user_tokens(name: str, _admin: AdminUser) -> list[dict[str, Any]]:
        """The user's tokens (never the secrets): id, when issued, when they expire."""
        ttl = app.state.settings.token_ttl
        with store.read() as s:
            user = _user(s, name)
            rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).all()
            return [
                {
                    "id": t.id,
                    "created_at": t.created_at.isoformat() + "Z",
                    "expires_at": (t.created_at + ttl).isoformat() + "Z" if ttl else None,
                    "expired": bool(ttl) and t.created_at + ttl <= utcnow(),
                }
                for t in rows
            ]

    @app.delete("/api/users/{name}/tokens", tags=["admin"])
    def revoke_user_tokens(name: str, _admin: AdminUser) -> dict[str, Any]:
        """Revoke every token of the user (they are logged out everywhere; passwords still work)."""
        with store.write() as s:
            user = _user(s, name)
            revoked = auth.revoke_tokens(s, user.id)
        app.state.token_cache.clear()
        return {"name": user.name, "revoked": revoked}

    @app.delete("/api/users/{name}/tokens/{token_id}", tags=["admin"])
    def revoke_user_token(name: str, token_id: Id, _admin: AdminUser) -> dict[str, Any]:
        """Revoke one token of the user (ids from GET /api/users/{name}/tokens)."""
        with store.write() as s:
            user = _user(s, name)
            if not auth.revoke_tokens(s, user.id, token_id):
                raise HTTPException(404, f"token {token_id} of user {user.name!r} not found")
        app.state.token_cache.clear()
        return {"name": user.name, "revoked": 1}

    @app.get("/api/users", tags=["admin"])
    def list_users(_admin: AdminUser) -> list[dict[str, Any]]:
        with store.read() as s:
            users = s.scalars(select(User).order_by(User.id)).all()
            return [
                {"name": u.name, "role": u.role, "created_at": u.created_at.isoformat() + "Z"} for u in users
            ]

    # -- campaigns ---------------------------------------------------------------------------
    @app.post("/api/campaigns", tags=["admin"])
    def create_campaign(body: CampaignIn, _admin: AdminUser) -> dict[str, Any]:
        with store.write() as s:
            return campaign_view(new_campaign(s, body))

    @app.get("/api/campaigns", tags=["campaigns"])
    def list_campaigns(user: CurrentUser) -> list[dict[str, Any]]:
        with store.read() as s:
            query = select(Campaign).order_by(Campaign.id)
            if user.role != "admin":
                query = query.join(CampaignAnnotator, CampaignAnnotator.campaign_id == Campaign.id).where(
                    CampaignAnnotator.user_id == user.id
                )
            return [campaign_summary(s, c, user) for c in s.scalars(query)]

    @app.get("/api/campaigns/{cid}", tags=["campaigns"])
    def get_one_campaign(cid: Id, user: CurrentUser) -> dict[str, Any]:
        with store.read() as s:
            return campaign_summary(s, get_campaign(s, cid, user), user)

    @app.post("/api/campaigns/{cid}/annotators", tags=["admin"])
    def add_annotators(cid: Id, body: AnnotatorsIn, admin: AdminUser) -> dict[str, Any]:
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            return join_annotators(s, c, body.names)

    @app.post("/api/campaigns/{cid}/items", tags=["admin"])
    def add_items(cid: Id, body: ItemsIn, admin: AdminUser) -> dict[str, Any]:
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            ids = insert_items(s, c, [i.model_dump(mode="json") for i in body.items])
            tasks = assign_mod.assign(s, c)
            return {"created": len(ids), "item_ids": ids, "tasks_created": tasks}

    @app.post("/api/campaigns/{cid}/media", tags=["admin"])
    async def upload_media(cid: Id, request: Request, admin: AdminUser) -> dict[str, Any]:
        """Store an image or video clip (the request body is the file's bytes; its type is sniffed
        from them: GIF, PNG, WebP, MP4 or WebM) -> `{media_id, content_type, size, sha256,
        created}`. The same file again in this campaign answers its first id (`created: false`).
        Items then show it as a response: `{"media_id": ..., "text": "optional caption"}`."""
        data = await request.body()
        try:
            kind, digest = check_media(data)
        except MediaError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return await anyio.to_thread.run_sync(lambda: store_media(store, cid, admin, data, kind, digest))

    @app.get("/api/media/{media_id}", tags=["admin"], response_class=Response)
    def get_media(media_id: Id, _admin: AdminUser) -> Response:
        """A stored clip by id (admins; annotators read clips through their tasks)."""
        with store.read() as s:
            m = s.get(Media, media_id)
            if m is None:
                raise HTTPException(404, f"media {media_id} not found")
            return media_response(m)

    @app.get("/api/campaigns/{cid}/items/status", tags=["admin"])
    def items_status(
        cid: Id,
        admin: AdminUser,
        ids: str = Query(..., max_length=200_000, description="comma-separated item ids"),
    ) -> dict[str, dict[str, int]]:
        """Per item: its tasks by status and its live judgments,
        `{item_id: {pending, done, skipped, judgments}}` (how a client waiting for answers knows
        that nobody is left to answer an item: no pending task and no judgment)."""
        try:
            wanted = sorted({int(x) for x in ids.split(",") if x.strip()})
        except ValueError:
            raise HTTPException(422, f"ids: expected comma-separated item ids, got {ids[:100]!r}") from None
        with store.read() as s:
            get_campaign(s, cid, admin)
            out = {
                str(i): {"pending": 0, "done": 0, "skipped": 0, "judgments": 0}
                for i in s.scalars(select(Item.id).where(Item.campaign_id == cid, Item.id.in_(wanted)))
            }
            if missing := [i for i in wanted if str(i) not in out]:
                raise HTTPException(404, f"item(s) {missing[:20]} not found in campaign {cid}")
            for item_id, status, n in s.execute(
                select(Assignment.item_id, Assignment.status, func.count())
                .where(Assignment.campaign_id == cid, Assignment.item_id.in_(wanted))
                .group_by(Assignment.item_id, Assignment.status)
            ):
                out[str(item_id)][status] = int(n)
            for item_id, n in s.execute(
                select(Judgment.item_id, func.count())
                .where(Judgment.campaign_id == cid, Judgment.item_id.in_(wanted), Judgment.undone.is_(False))
                .group_by(Judgment.item_id)
            ):
                out[str(item_id)]["judgments"] = int(n)
            return out

    # -- annotation --------------------------------------------------------------------------
    # The two hot endpoints return their JSON directly (FastAPI's response validation of a plain
    # dict cost ~10% of the server's CPU under load); response_model keeps the schema.
    @app.get("/api/campaigns/{cid}/next", tags=["annotation"], response_model=dict[str, Any])
    def get_next(cid: Id, user: CurrentUser) -> Response:
        with store.read_core() as s:
            c = annotated_campaign(s, cid, user)
            return JSONResponse(
                {
                    "task": next_task(store, s, c, user, task_ids),
                    "progress": assign_mod.task_counts(s, cid, user.id),
                }
            )

    @app.get("/api/tasks/{task_id}", tags=["annotation"])
    def get_task(task_id: Id, user: CurrentUser) -> dict[str, Any]:
        with store.read() as s:
            a = own_task(s, task_id, user)
            return task_view(s.get(Campaign, a.campaign_id), a, cached_item(store, s, a.item_id), task_ids)

    @app.get("/api/tasks/{task_id}/media/{response_id}", tags=["annotation"], response_class=Response)
    def task_media(task_id: Id, response_id: Id, user: CurrentUser) -> Response:
        """The clip a response of your task shows (`response_id`: the task's id for it)."""
        with store.read() as s:
            a = own_task(s, task_id, user)
            shown = task_ids.shown(a.id, cached_item(store, s, a.item_id), shuffle=False)
            if response_id not in shown.media:
                raise HTTPException(404, f"response {response_id} of task {task_id} shows no media")
            m = s.get(Media, shown.media[response_id][0])
            assert m is not None  # a response's media exists (foreign key)
            return media_response(m)

    @app.post("/api/tasks/{task_id}/submit", tags=["annotation"], response_model=dict[str, Any])
    def submit(task_id: Id, body: SubmitIn, user: CurrentUser) -> Response:
        for _attempt in range(2):
            try:
                return JSONResponse(submit_judgment(store, task_ids, task_id, body, user))
            except _Changed:
                # Submitted (by a concurrent retry, or another key), undone or moved meanwhile:
                # the same checks again on what is there now give the right answer.
                continue
            except IntegrityError:
                # The key was used before (a concurrent retry that committed first, a retry
                # after an undo, or another task): answer as for that judgment.
                with store.read() as s:
                    existing = find_by_key(s, user.id, body.idempotency_key)
                    if existing is None:
                        raise
                    a = own_task(s, task_id, user)
                    shown = task_ids.shown(a.id, cached_item(store, s, a.item_id), shuffle=False)
                    return JSONResponse(
                        duplicate_answer(existing, task_id, _payload_or_none(body, shown) or {}, shown)
                    )
        raise HTTPException(409, f"task {task_id} changed while submitting; try again")

    @app.post("/api/tasks/{task_id}/skip", tags=["annotation"])
    def skip(task_id: Id, user: CurrentUser) -> dict[str, Any]:
        """Skip a task; its item goes to another annotator (when there is one) so it still gets
        the campaign's overlap."""
        with store.write() as s:
            a = own_task(s, task_id, user, lock=True)
            if a.status == "done":
                raise HTTPException(409, f"task {task_id} is already submitted; undo it before skipping")
            skip_task(s, a)
            return {"task_id": a.id, "status": a.status}

    @app.post("/api/campaigns/{cid}/undo", tags=["annotation"])
    def undo(cid: Id, user: CurrentUser) -> dict[str, Any]:
        """Undo your last action in the campaign: a submission (it comes back with your answers in
        `previous`) or a skip (the task comes back; `undone` says which)."""
        with store.write() as s:
            c = annotated_campaign(s, cid, user)
            j = s.scalars(
                select(Judgment)
                .where(Judgment.campaign_id == cid, Judgment.user_id == user.id, Judgment.undone.is_(False))
                .order_by(Judgment.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            skipped = s.scalars(
                select(Assignment)
                .where(
                    Assignment.campaign_id == cid,
                    Assignment.user_id == user.id,
                    Assignment.status == "skipped",
                )
                .order_by(Assignment.updated_at.desc(), Assignment.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if j is None and skipped is None:
                raise HTTPException(409, "nothing to undo: you have no submission or skip in this campaign")
            previous = None
            if skipped is not None and (j is None or skipped.updated_at >= j.created_at):
                a, what, undone_id = skipped, "skip", None
            else:
                assert j is not None  # no skip to undo, and "nothing to undo" was answered above
                j.undone = True
                found = s.get(Assignment, j.assignment_id)
                assert found is not None  # a judgment's assignment is never deleted
                a, what, undone_id = found, "submission", j.id
            a.status, a.updated_at = "pending", utcnow()
            s.flush()
            item = load_item(s, a.item_id)
            if j is not None and what == "submission":
                previous = payload_to_shown(dict(j.payload), task_ids.shown(a.id, item, shuffle=False))
            return {
                "task": task_view(c, a, item, task_ids),
                "undone": what,
                "undone_judgment_id": undone_id,
                "previous": previous,
                "progress": assign_mod.task_counts(s, cid, user.id),
            }

    # -- results -----------------------------------------------------------------------------
    @app.get("/api/campaigns/{cid}/judgments", tags=["admin"])
    def judgments(cid: Id, admin: AdminUser) -> list[dict[str, Any]]:
        with store.read() as s:
            get_campaign(s, cid, admin)
            return campaign_judgments(s, cid)

    @app.get("/api/campaigns/{cid}/report", tags=["admin"])
    def report(cid: Id, admin: AdminUser) -> Any:
        quality = _quality()
        return quality.quality_report(judgments(cid, admin))

    @app.get("/api/campaigns/{cid}/leaderboard", tags=["admin"])
    def leaderboard(cid: Id, admin: AdminUser, n_bootstrap: Bootstraps = 200, seed: Seed = 0) -> Any:
        quality = _quality()
        return quality.leaderboard(judgments(cid, admin), n_bootstrap=n_bootstrap, seed=seed)

    @app.get("/api/campaigns/{cid}/leaderboard.png", tags=["admin"], response_class=Response)
    def leaderboard_png(cid: Id, admin: AdminUser, n_bootstrap: Bootstraps = 200, seed: Seed = 0) -> Response:
        board = leaderboard(cid, admin, n_bootstrap=n_bootstrap, seed=seed)
        return Response(_quality().leaderboard_png(board), media_type="image/png")

    @app.get("/api/campaigns/{cid}/export", tags=["admin"], response_class=PlainTextResponse)
    def export_campaign(
        cid: Id,
        admin: AdminUser,
        kind: export.Kind = Query(
            ..., description="pairwise | ranked | binary | rating | demonstration | critique"
        ),
        mode: export.Mode = Query("raw", description="raw (one record per annotator) | consensus"),
    ) -> Response:
        with store.read() as s:
            c = get_campaign(s, cid, admin)
            try:
                records = export.export_records(s, c.id, kind, mode)
            except export.ExportError as exc:
                raise HTTPException(422, str(exc)) from None
        return Response(
            export.to_jsonl(records),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="campaign{cid}-{kind}-{mode}.jsonl"'},
        )


def _quality() -> Any:
    try:
        from prefloop.feedback import quality
    except ImportError as exc:  # the statistics module ships separately in development
        raise HTTPException(503, f"statistics are unavailable: {exc}") from None
    return quality


def campaign_summary(s: Session, c: Campaign, user: Principal) -> dict[str, Any]:
    """`campaign_view` plus the caller's progress (when one of its annotators) and, for admins, counts."""
    view = campaign_view(c)
    if is_member(s, c.id, user.id):
        view["progress"] = assign_mod.task_counts(s, c.id, user.id)
    if user.role == "admin":
        view.update(campaign_stats(s, c.id))
    return view


def campaign_stats(s: Session, cid: int) -> dict[str, int]:
    def count(query: Any) -> int:
        return int(s.scalar(query) or 0)

    return {
        "n_items": count(select(func.count()).select_from(Item).where(Item.campaign_id == cid)),
        "n_annotators": count(
            select(func.count()).select_from(CampaignAnnotator).where(CampaignAnnotator.campaign_id == cid)
        ),
        "n_tasks": count(select(func.count()).select_from(Assignment).where(Assignment.campaign_id == cid)),
        "n_judgments": count(
            select(func.count())
            .select_from(Judgment)
            .where(Judgment.campaign_id == cid, Judgment.undone.is_(False))
        ),
    }


# ---------------------------------------------------------------------------------------------
# Write helpers shared by the API and the CLI (each runs inside the caller's transaction)


def new_campaign(s: Session, spec: CampaignIn) -> Campaign:
    """Insert a campaign as `spec` describes (flushed, so it has its id)."""
    c = Campaign(
        name=spec.name,
        feedback_types=list(spec.feedback_types),
        overlap=spec.overlap,
        anonymous=spec.anonymous,
        rating_lo=spec.rating_scale[0],
        rating_hi=spec.rating_scale[1],
        instructions=spec.instructions,
        created_at=utcnow(),
    )
    s.add(c)
    s.flush()
    return c


def join_annotators(s: Session, c: Campaign, names: list[str]) -> dict[str, Any]:
    """Add users `names` to campaign `c`; unknown names become new annotator accounts whose
    tokens are returned (shown once). Then (re)assigns items."""
    out = []
    for name in names:
        user = auth.find_user(s, name)
        token = None
        if user is None:
            user, token = auth.create_user(s, name, "annotator")
        if not is_member(s, c.id, user.id):
            s.add(CampaignAnnotator(campaign_id=c.id, user_id=user.id, joined_at=utcnow()))
        out.append({"name": user.name, "role": user.role, "token": token, "created": token is not None})
    s.flush()
    tasks = assign_mod.assign(s, c)
    return {"annotators": out, "tasks_created": tasks}


def insert_items(s: Session, c: Campaign, items: list[dict[str, Any]]) -> list[int]:
    """Insert items with their responses (positions in the given order); returns the new item ids.

    A response's `media_id` must name a file of this campaign (422 otherwise, nothing written)."""
    ids = []
    now = utcnow()
    wanted = {r["media_id"] for data in items for r in data["responses"] if r.get("media_id") is not None}
    if wanted:
        found = set(s.scalars(select(Media.id).where(Media.id.in_(wanted), Media.campaign_id == c.id)))
        if missing := sorted(wanted - found):
            raise HTTPException(
                422,
                f"media_id {missing} not found in campaign {c.id}: upload the files first "
                f"(POST /api/campaigns/{c.id}/media)",
            )
    for data in items:
        item = Item(
            campaign_id=c.id,
            prompt=data["prompt"],
            gold=data.get("gold"),
            priority=data.get("priority"),
            created_at=now,
        )
        s.add(item)
        s.flush()
        for pos, r in enumerate(data["responses"]):
            s.add(
                ResponseRow(
                    item_id=item.id,
                    position=pos,
                    text=r.get("text", ""),
                    model=r.get("model"),
                    checkpoint=r.get("checkpoint"),
                    media_id=r.get("media_id"),
                )
            )
        ids.append(item.id)
    s.flush()
    return ids


def store_media(
    store: Store, cid: int, admin: Principal, data: bytes, kind: str, digest: str
) -> dict[str, Any]:
    """Insert a checked file into campaign `cid` (or find the same bytes stored before)."""
    with store.write() as s:
        get_campaign(s, cid, admin)
        m = s.scalars(select(Media).where(Media.campaign_id == cid, Media.sha256 == digest)).first()
        created = m is None
        if m is None:
            m = Media(campaign_id=cid, sha256=digest, content_type=kind, size=len(data), data=data)
            m.created_at = utcnow()
            s.add(m)
            s.flush()
        return {
            "media_id": m.id,
            "content_type": m.content_type,
            "size": m.size,
            "sha256": digest,
            "created": created,
        }


MEDIA_EXT = {
    "image/gif": "gif",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/webm": "webm",
}


def media_response(m: Media) -> Response:
    """A stored file with its sniffed type, shown inline (never as a download that runs)."""
    return Response(
        m.data,
        media_type=m.content_type,
        headers={
            "Content-Disposition": f'inline; filename="clip-{m.id}.{MEDIA_EXT[m.content_type]}"',
            "Cache-Control": "private, max-age=3600",
        },
    )


def skip_task(s: Session, a: Assignment) -> None:
    """Mark a pending task skipped and hand its item to another annotator (when there is one), so
    the item still gets the campaign's overlap (the skip endpoint and "can't judge" reports)."""
    if a.status == "skipped":
        return
    a.status, a.updated_at = "skipped", utcnow()
    s.flush()
    c = s.get(Campaign, a.campaign_id, with_for_update=True)
    assert c is not None  # an assignment's campaign exists (foreign key)
    assign_mod.assign(s, c, rebalance=False)


def find_by_key(s: Session, user_id: int, key: str) -> Judgment | None:
    return s.scalars(
        select(Judgment).where(Judgment.user_id == user_id, Judgment.idempotency_key == key)
    ).first()


def revealed_models(shown: Shown) -> dict[str, str | None]:
    return {str(d): shown.model[d] for d in shown.ids}


def duplicate_answer(j: Judgment, task_id: int, payload: dict[str, Any], shown: Shown) -> dict[str, Any]:
    """The answer to a retry of judgment `j`: the same result, or 409 when the key was used for
    another task or with a different body."""
    if j.assignment_id != task_id:
        raise HTTPException(
            409, f"idempotency_key already used for another submission (task {j.assignment_id})"
        )
    if _canonical(j.payload) != _canonical(payload):
        raise HTTPException(
            409,
            "idempotency_key already used with a different answer: use a new key for a new answer "
            "(undo the first one to change it)",
        )
    return {"judgment_id": j.id, "duplicate": True, "revealed_models": revealed_models(shown)}


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def submit_judgment(
    store: Store, task_ids: TaskIds, task_id: int, body: SubmitIn, user: Principal
) -> dict[str, Any]:
    """Validate against a read snapshot, then write in one short transaction: a guarded UPDATE of
    the task (pending/skipped -> done) and one INSERT. Only that write holds SQLite's write lock
    (and pays the commit's fsync), which is what bounds submit latency under load. A concurrent
    change between the two steps (a retry, an undo, a reassignment) is caught by the guard; a
    key used before (a retry after an undo, or on another task) by the unique constraint."""
    with store.read_core() as conn:
        row = conn.execute(  # the task, if it is the caller's, with its campaign: one query
            select(
                Assignment.item_id,
                Assignment.status,
                Assignment.campaign_id,
                Campaign.feedback_types,
                Campaign.rating_lo,
                Campaign.rating_hi,
            )
            .join(Campaign, Campaign.id == Assignment.campaign_id)
            .where(Assignment.id == task_id, Assignment.user_id == user.id)
        ).first()
        if row is None:
            raise HTTPException(404, f"task {task_id} not found")
        shown = task_ids.shown(task_id, cached_item(store, conn, row.item_id), shuffle=False)
    problem = validate_submission(body, shown.ids, list(row.feedback_types), (row.rating_lo, row.rating_hi))
    if row.status == "done" or problem:
        # A retry of the submission that made the task done, a second answer, or a key used
        # before (on another task, or with another answer): the key decides the answer first.
        with store.read() as s:
            existing = find_by_key(s, user.id, body.idempotency_key)
            if existing is not None:
                return duplicate_answer(existing, task_id, _payload_or_none(body, shown) or {}, shown)
        if row.status == "done":
            raise HTTPException(409, f"task {task_id} is already submitted; undo it to change the answer")
        raise HTTPException(422, problem)
    campaign_id, item_id = row.campaign_id, row.item_id
    payload = payload_to_real(body.feedback(), shown)
    with store.write_core() as s:
        now = utcnow()
        claimed = s.execute(
            update(Assignment)
            .where(Assignment.id == task_id, Assignment.user_id == user.id, Assignment.status != "done")
            .values(status="done", updated_at=now)
        ).rowcount
        if not claimed:  # changed since the read: answer as if the write had come first
            raise _Changed
        judgment_id = s.execute(
            insert(Judgment)
            .values(
                assignment_id=task_id,
                campaign_id=campaign_id,
                item_id=item_id,
                user_id=user.id,
                idempotency_key=body.idempotency_key,
                payload=payload,
                undone=False,
                created_at=now,
            )
            .returning(Judgment.id)
        ).scalar_one()
    return {"judgment_id": judgment_id, "duplicate": False, "revealed_models": revealed_models(shown)}


class _Changed(Exception):
    """The task changed between submit's read and its write (the caller reads again)."""


def _payload_or_none(body: SubmitIn, shown: Shown) -> dict[str, Any] | None:
    try:
        return payload_to_real(body.feedback(), shown)
    except KeyError:  # ids that are not this task's: certainly not the first body
        return None


# ---------------------------------------------------------------------------------------------
# Pages (HTML shells; static/app.js does the work through the API)


_PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>prefloop</title></head>
<body><h1>prefloop feedback server</h1><p>The page template <code>{name}</code> is not installed.
The REST API is documented at <a href="/docs">/docs</a>.</p></body></html>"""


_DOCS_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>prefloop feedback server - API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>"""
_NO_SWAGGER = """<!doctype html><html><head><meta charset="utf-8"><title>prefloop</title></head><body>
<p>The API browser needs the <code>swagger-ui-bundle</code> package (pip install swagger-ui-bundle).
The schema is at <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


def _swagger_ui_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _page_routes(app: FastAPI) -> None:
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR), check_dir=False), name="static")

    def render(request: Request, page: str, **context: Any) -> HTMLResponse:
        name = PAGES[page]
        if not (TEMPLATES_DIR / name).is_file():
            return HTMLResponse(_PLACEHOLDER.format(name=name))
        return templates.TemplateResponse(request, name, {"page": page, **context})

    swagger = _swagger_ui_dir()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=str(swagger)), name="docs-assets")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs_page() -> HTMLResponse:
        """Swagger UI from local files (no CDN); the Authorize button takes a bearer token."""
        if swagger is None:
            return HTMLResponse(_NO_SWAGGER, status_code=503)
        return HTMLResponse(_DOCS_HTML)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page(request: Request) -> HTMLResponse:
        return render(request, "index")

    @app.get("/annotate/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def annotate_page(request: Request, cid: Id) -> HTMLResponse:
        return render(request, "annotate", campaign_id=cid)

    @app.get("/leaderboard/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page(request: Request, cid: Id) -> HTMLResponse:
        return render(request, "leaderboard", campaign_id=cid)

    @app.get("/report/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def report_page(request: Request, cid: Id) -> HTMLResponse:
        return render(request, "report", campaign_id=cid)

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request) -> HTMLResponse:
        return render(request, "admin")

    @app.get("/admin/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def campaign_page(request: Request, cid: int) -> HTMLResponse:
        return render(request, "campaign", campaign_id=cid)

    @app.get("/review/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, cid: int) -> HTMLResponse:
        return render(request, "review", campaign_id=cid)
