"""The feedback web service: REST API (FastAPI, OpenAPI at /openapi.json, docs at /docs) + pages.

`create_app(db_url)` builds the app over one `Store`. Every request that changes something runs
in exactly one database transaction (`store.write()`): validation errors raise before commit, so
a 4xx never leaves a partial write. Errors are `{"detail": "<clear message>"}`.

Access rules
- no / bad token -> 401; an annotator on an admin endpoint -> 403;
- an annotator asking for a campaign they are not in, or a task that is not theirs -> 404
  (the same answer as for one that does not exist, so ids leak nothing).

Anonymous campaigns hide model names in /next (and shuffle the display order of responses per
task, so position does not hint at the model); the submit response reveals them.
Submissions carry an idempotency key, unique per annotator: a retry returns the first result
with duplicate=true and stores nothing.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.feedback import assignment as assign_mod
from prefloop.feedback import auth, export
from prefloop.feedback.auth import AdminUser, CurrentUser, Principal
from prefloop.feedback.rendering import render_markdown
from prefloop.feedback.schemas import (
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
    Store,
    User,
    campaign_judgments,
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


def task_view(c: Campaign, a: Assignment, item: ItemView) -> dict[str, Any]:
    """A task for its annotator; `*_html` fields are Markdown rendered to sanitized HTML
    (`rendering.render_markdown`), the raw texts stay for editing."""
    responses = [
        {
            "id": r.id,
            "text": r.text,
            "html": render_markdown(r.text),
            "model": None if c.anonymous else r.model,
        }
        for r in item.responses
    ]
    if c.anonymous:
        random.Random(a.id).shuffle(responses)  # deterministic per task: reloads show the same order
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


def annotated_campaign(session: Session, cid: int, user: Principal) -> Campaign:
    """The campaign for annotation endpoints: the caller must be one of its annotators.

    Annotators outside it get 404 (as if it did not exist); an admin who is not one of its
    annotators gets 403 with a hint."""
    c = session.get(Campaign, cid)
    member = c is not None and is_member(session, cid, user.id)
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


def load_item(session: Session, item_id: int) -> ItemView:
    prompt = session.execute(select(Item.prompt).where(Item.id == item_id)).scalar_one()
    rows = session.execute(
        select(ResponseRow.id, ResponseRow.text, ResponseRow.model)
        .where(ResponseRow.item_id == item_id)
        .order_by(ResponseRow.position)
    ).all()
    return ItemView(item_id, prompt, [SimpleNamespace(id=r.id, text=r.text, model=r.model) for r in rows])


def next_task(session: Session, c: Campaign, user: Principal) -> dict[str, Any] | None:
    a = session.scalars(
        select(Assignment)
        .where(Assignment.campaign_id == c.id, Assignment.user_id == user.id, Assignment.status == "pending")
        .order_by(Assignment.id)
        .limit(1)
    ).first()
    return None if a is None else task_view(c, a, load_item(session, a.item_id))


# ---------------------------------------------------------------------------------------------
# The app


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def create_app(db_url: str = "sqlite:///feedback.db", *, migrate: bool = True) -> FastAPI:
    """The FastAPI app over the database at `db_url` (migrated to the latest schema unless told not to)."""
    if migrate:
        upgrade(db_url)
    store = Store(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.dispose()

    app = FastAPI(
        title="prefloop feedback server",
        version="1",
        description="Collect human feedback on model responses; export it as training data. "
        "Authenticate with 'Authorization: Bearer <token>' (POST /api/login gives one).",
        lifespan=lifespan,
    )
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(exc), "errors": errors}, status_code=422)

    _api_routes(app, store)
    from prefloop.feedback import admin, review  # they build on this module's helpers

    admin.add_routes(app, store)
    review.add_routes(app, store)
    _page_routes(app)
    return app


def _api_routes(app: FastAPI, store: Store) -> None:
    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, Any]:
        with store.read() as s:
            s.execute(select(1))
        return {"ok": True, "db": store.engine.dialect.name}

    # -- accounts ----------------------------------------------------------------------------
    @app.post("/api/login", tags=["auth"])
    def login(body: LoginIn) -> dict[str, Any]:
        # The (deliberately slow) password check runs outside the write transaction, so a login
        # never holds SQLite's write lock while hashing.
        with store.read() as s:
            user = auth.login(s, body.name, body.password)
            if user is None:
                raise HTTPException(401, "wrong name or password")
            s.expunge(user)
        with store.write() as s:
            token = auth.issue_token(s, user)
        return {"token": token, "name": user.name, "role": user.role}

    @app.post("/api/logout", tags=["auth"])
    def logout(request: Request, _user: CurrentUser) -> dict[str, Any]:
        """Revoke the token this request was made with."""
        token = request.headers["authorization"].partition(" ")[2].strip()
        with store.write() as s:
            s.execute(delete(ApiToken).where(ApiToken.token_hash == auth.hash_token(token)))
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(user: CurrentUser) -> dict[str, Any]:
        return {"name": user.name, "role": user.role}

    @app.post("/api/users", tags=["admin"])
    def create_user(body: UserIn, _admin: AdminUser) -> dict[str, Any]:
        password_hash = auth.hash_password(body.password) if body.password else None  # outside the lock
        with store.write() as s:
            if s.scalars(select(User).where(User.name == body.name)).first() is not None:
                raise HTTPException(409, f"user {body.name!r} already exists")
            user, token = auth.create_user(s, body.name, body.role, password_hash=password_hash)
            return {"name": user.name, "role": user.role, "token": token}

    @app.post("/api/users/{name}/tokens", tags=["admin"])
    def new_user_token(name: str, _admin: AdminUser) -> dict[str, Any]:
        """Issue another token for a user (e.g. one who lost theirs); older tokens stay valid."""
        with store.write() as s:
            user = s.scalars(select(User).where(User.name == name)).first()
            if user is None:
                raise HTTPException(404, f"user {name!r} not found")
            return {"name": user.name, "role": user.role, "token": auth.issue_token(s, user)}

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
    def get_one_campaign(cid: int, user: CurrentUser) -> dict[str, Any]:
        with store.read() as s:
            return campaign_summary(s, get_campaign(s, cid, user), user)

    @app.post("/api/campaigns/{cid}/annotators", tags=["admin"])
    def add_annotators(cid: int, body: AnnotatorsIn, admin: AdminUser) -> dict[str, Any]:
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            return join_annotators(s, c, body.names)

    @app.post("/api/campaigns/{cid}/items", tags=["admin"])
    def add_items(cid: int, body: ItemsIn, admin: AdminUser) -> dict[str, Any]:
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            ids = insert_items(s, c, [i.model_dump(mode="json") for i in body.items])
            tasks = assign_mod.assign(s, c)
            return {"created": len(ids), "item_ids": ids, "tasks_created": tasks}

    # -- annotation --------------------------------------------------------------------------
    @app.get("/api/campaigns/{cid}/next", tags=["annotation"])
    def get_next(cid: int, user: CurrentUser) -> dict[str, Any]:
        with store.read() as s:
            c = annotated_campaign(s, cid, user)
            return {"task": next_task(s, c, user), "progress": assign_mod.task_counts(s, cid, user.id)}

    @app.get("/api/tasks/{task_id}", tags=["annotation"])
    def get_task(task_id: int, user: CurrentUser) -> dict[str, Any]:
        with store.read() as s:
            a = own_task(s, task_id, user)
            return task_view(s.get(Campaign, a.campaign_id), a, load_item(s, a.item_id))

    @app.post("/api/tasks/{task_id}/submit", tags=["annotation"])
    def submit(task_id: int, body: SubmitIn, user: CurrentUser) -> dict[str, Any]:
        try:
            return submit_judgment(store, task_id, body, user)
        except IntegrityError:
            # A concurrent retry with the same key committed first: answer with its judgment.
            with store.read() as s:
                existing = find_by_key(s, user.id, body.idempotency_key)
                if existing is None:
                    raise
                return duplicate_answer(s, existing, task_id)

    @app.post("/api/tasks/{task_id}/skip", tags=["annotation"])
    def skip(task_id: int, user: CurrentUser) -> dict[str, Any]:
        with store.write() as s:
            a = own_task(s, task_id, user, lock=True)
            if a.status == "done":
                raise HTTPException(409, f"task {task_id} is already submitted; undo it before skipping")
            a.status, a.updated_at = "skipped", utcnow()
            return {"task_id": a.id, "status": a.status}

    @app.post("/api/campaigns/{cid}/undo", tags=["annotation"])
    def undo(cid: int, user: CurrentUser) -> dict[str, Any]:
        with store.write() as s:
            c = annotated_campaign(s, cid, user)
            j = s.scalars(
                select(Judgment)
                .where(Judgment.campaign_id == cid, Judgment.user_id == user.id, Judgment.undone.is_(False))
                .order_by(Judgment.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if j is None:
                raise HTTPException(409, "nothing to undo: you have no submission in this campaign")
            j.undone = True
            a = s.get(Assignment, j.assignment_id)
            a.status, a.updated_at = "pending", utcnow()
            s.flush()
            return {
                "task": task_view(c, a, load_item(s, a.item_id)),
                "undone_judgment_id": j.id,
                "previous": dict(j.payload),
                "progress": assign_mod.task_counts(s, cid, user.id),
            }

    # -- results -----------------------------------------------------------------------------
    @app.get("/api/campaigns/{cid}/judgments", tags=["admin"])
    def judgments(cid: int, admin: AdminUser) -> list[dict[str, Any]]:
        with store.read() as s:
            get_campaign(s, cid, admin)
            return campaign_judgments(s, cid)

    @app.get("/api/campaigns/{cid}/report", tags=["admin"])
    def report(cid: int, admin: AdminUser) -> Any:
        quality = _quality()
        return quality.quality_report(judgments(cid, admin))

    @app.get("/api/campaigns/{cid}/leaderboard", tags=["admin"])
    def leaderboard(
        cid: int, admin: AdminUser, n_bootstrap: int = Query(200, ge=0, le=10_000), seed: int = 0
    ) -> Any:
        quality = _quality()
        return quality.leaderboard(judgments(cid, admin), n_bootstrap=n_bootstrap, seed=seed)

    @app.get("/api/campaigns/{cid}/leaderboard.png", tags=["admin"], response_class=Response)
    def leaderboard_png(
        cid: int, admin: AdminUser, n_bootstrap: int = Query(200, ge=0, le=10_000), seed: int = 0
    ) -> Response:
        board = leaderboard(cid, admin, n_bootstrap=n_bootstrap, seed=seed)
        return Response(_quality().leaderboard_png(board), media_type="image/png")

    @app.get("/api/campaigns/{cid}/export", tags=["admin"], response_class=PlainTextResponse)
    def export_campaign(
        cid: int,
        admin: AdminUser,
        kind: export.Kind = Query(..., description="pairwise | ranked | binary | rating | demonstration"),
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
        user = s.scalars(select(User).where(User.name == name)).first()
        token = None
        if user is None:
            user, token = auth.create_user(s, name, "annotator")
        if not is_member(s, c.id, user.id):
            s.add(CampaignAnnotator(campaign_id=c.id, user_id=user.id, joined_at=utcnow()))
        out.append({"name": name, "role": user.role, "token": token, "created": token is not None})
    s.flush()
    tasks = assign_mod.assign(s, c)
    return {"annotators": out, "tasks_created": tasks}


def insert_items(s: Session, c: Campaign, items: list[dict[str, Any]]) -> list[int]:
    """Insert items with their responses (positions in the given order); returns the new item ids."""
    ids = []
    now = utcnow()
    for data in items:
        item = Item(campaign_id=c.id, prompt=data["prompt"], gold=data.get("gold"), created_at=now)
        s.add(item)
        s.flush()
        for pos, r in enumerate(data["responses"]):
            s.add(
                ResponseRow(
                    item_id=item.id,
                    position=pos,
                    text=r["text"],
                    model=r.get("model"),
                    checkpoint=r.get("checkpoint"),
                )
            )
        ids.append(item.id)
    s.flush()
    return ids


def find_by_key(s: Session, user_id: int, key: str) -> Judgment | None:
    return s.scalars(
        select(Judgment).where(Judgment.user_id == user_id, Judgment.idempotency_key == key)
    ).first()


def revealed_models(item: ItemView) -> dict[str, str | None]:
    return {str(r.id): r.model for r in item.responses}


def duplicate_answer(s: Session, j: Judgment, task_id: int) -> dict[str, Any]:
    if j.assignment_id != task_id:
        raise HTTPException(
            409, f"idempotency_key already used for another submission (task {j.assignment_id})"
        )
    return {
        "judgment_id": j.id,
        "duplicate": True,
        "revealed_models": revealed_models(load_item(s, j.item_id)),
    }


def submit_judgment(store: Store, task_id: int, body: SubmitIn, user: Principal) -> dict[str, Any]:
    with store.write() as s:
        a = own_task(s, task_id, user, lock=True)
        existing = find_by_key(s, user.id, body.idempotency_key)
        if existing is not None:
            return duplicate_answer(s, existing, task_id)
        if a.status == "done":
            raise HTTPException(409, f"task {task_id} is already submitted; undo it to change the answer")
        c = s.get(Campaign, a.campaign_id)
        item = load_item(s, a.item_id)
        problem = validate_submission(
            body, [r.id for r in item.responses], list(c.feedback_types), (c.rating_lo, c.rating_hi)
        )
        if problem:
            raise HTTPException(422, problem)
        j = Judgment(
            assignment_id=a.id,
            campaign_id=c.id,
            item_id=item.id,
            user_id=user.id,
            idempotency_key=body.idempotency_key,
            payload=body.feedback(),
            undone=False,
            created_at=utcnow(),
        )
        s.add(j)
        a.status, a.updated_at = "done", utcnow()
        s.flush()
        return {"judgment_id": j.id, "duplicate": False, "revealed_models": revealed_models(item)}


# ---------------------------------------------------------------------------------------------
# Pages (HTML shells; static/app.js does the work through the API)


_PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>prefloop</title></head>
<body><h1>prefloop feedback server</h1><p>The page template <code>{name}</code> is not installed.
The REST API is documented at <a href="/docs">/docs</a>.</p></body></html>"""


def _page_routes(app: FastAPI) -> None:
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR), check_dir=False), name="static")

    def render(request: Request, page: str, **context: Any) -> HTMLResponse:
        name = PAGES[page]
        if not (TEMPLATES_DIR / name).is_file():
            return HTMLResponse(_PLACEHOLDER.format(name=name))
        response = templates.TemplateResponse(request, name, {"page": page, **context})
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page(request: Request) -> HTMLResponse:
        return render(request, "index")

    @app.get("/annotate/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def annotate_page(request: Request, cid: int) -> HTMLResponse:
        return render(request, "annotate", campaign_id=cid)

    @app.get("/leaderboard/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page(request: Request, cid: int) -> HTMLResponse:
        return render(request, "leaderboard", campaign_id=cid)

    @app.get("/report/{cid}", response_class=HTMLResponse, include_in_schema=False)
    def report_page(request: Request, cid: int) -> HTMLResponse:
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
