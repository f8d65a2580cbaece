"""Campaign administration from the browser: what `prefloop campaign ...` does, over the API.

    POST   /api/campaigns/upload              multipart: campaign (JSON, as POST /api/campaigns),
                                              files (items files, as --items), annotators (optional)
    POST   /api/campaigns/{cid}/items/upload  multipart: files -> more items
    PATCH  /api/campaigns/{cid}               name, feedback types, overlap, guidelines, ...
    GET    /api/campaigns/{cid}/annotators    annotators with their progress and live tokens
    GET    /api/users/{name}/tokens           a user's live tokens (id, created_at; never the token)
    DELETE /api/users/{name}/tokens/{id}      revoke one token
    DELETE /api/users/{name}/tokens           revoke all of a user's tokens

Uploaded files are parsed by the CLI's own reader (`cli.read_item_files`: same formats, same
merging of equal prompts across files, same validation), so an error names the uploaded file,
the line and the field: `samples.jsonl:7: field 'responses': missing`. Nothing is written
unless every file is valid: the campaign, its items, its tasks and its annotators are created
in one transaction.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prefloop.feedback import assignment as assign_mod
from prefloop.feedback import auth
from prefloop.feedback.app import (
    Id,
    campaign_summary,
    get_campaign,
    insert_items,
    join_annotators,
    new_campaign,
)
from prefloop.feedback.auth import AdminUser
from prefloop.feedback.schemas import AnnotatorsIn, CampaignIn, CampaignPatch
from prefloop.feedback.store import ApiToken, Campaign, CampaignAnnotator, Store, User, utcnow

UPLOAD_SUFFIXES = (".jsonl", ".json", ".parquet")


def create_with_items(
    s: Session, spec: CampaignIn, items: list[dict[str, Any]], annotators: list[str]
) -> tuple[Campaign, dict[str, Any] | None]:
    """A new campaign with its items, tasks and annotators (the CLI's `campaign create` and the
    upload endpoint); runs inside the caller's transaction."""
    c = new_campaign(s, spec)
    insert_items(s, c, items)
    assign_mod.assign(s, c)
    joined = join_annotators(s, c, annotators) if annotators else None
    return c, joined


def _safe_name(name: str | None, index: int) -> str:
    """The uploaded file's base name, reduced to harmless characters (it becomes a temp file name)."""
    base = Path(name or f"upload-{index}").name
    base = re.sub(r"[^\w.+-]", "_", base)[:120] or f"upload-{index}"
    return base if not base.startswith(".") else "_" + base


def read_uploads(files: list[UploadFile]) -> list[dict[str, Any]]:
    """Items of uploaded files, through the CLI's reader; 422 naming file:line:field on bad input."""
    from prefloop.feedback.cli import ItemsError, read_item_files

    if not files:
        raise HTTPException(422, "no items file uploaded: attach one or more .jsonl, .json or .parquet files")
    with tempfile.TemporaryDirectory(prefix="prefloop-upload-") as tmp:
        paths = []
        for i, upload in enumerate(files):
            name = _safe_name(upload.filename, i)
            if not name.lower().endswith(UPLOAD_SUFFIXES):
                raise HTTPException(
                    422, f"{name}: unsupported file type; upload .jsonl, .json or .parquet items files"
                )
            path = Path(tmp) / str(i) / name
            path.parent.mkdir()
            path.write_bytes(upload.file.read())
            paths.append(path)
        try:
            return read_item_files(paths)
        except ItemsError as exc:
            # the reader names the temporary path; the admin knows the file by its own name
            message = re.sub(re.escape(tmp) + r"/\d+/", "", str(exc))
            raise HTTPException(422, message) from None


def _parse_annotators(raw: str | None) -> list[str]:
    names = (raw or "").replace(",", " ").split()
    if not names:
        return []
    try:
        return AnnotatorsIn(names=names).names
    except ValidationError as exc:
        raise HTTPException(422, f"annotators: {exc.errors()[0]['msg']}") from None


def _user(s: Session, name: str) -> User:
    user = auth.find_user(s, name)
    if user is None:
        raise HTTPException(404, f"user {name!r} not found")
    return user


def token_view(t: ApiToken) -> dict[str, Any]:
    view = {"id": t.id, "created_at": t.created_at.isoformat() + "Z"}
    expires = getattr(t, "expires_at", None)  # tokens may carry an expiry
    if expires is not None:
        view["expires_at"] = expires.isoformat() + "Z"
    return view


def add_routes(app: FastAPI, store: Store) -> None:
    @app.post("/api/campaigns/upload", tags=["admin"])
    def create_from_files(
        _admin: AdminUser,
        campaign: str = Form(..., description="the campaign as JSON, the body of POST /api/campaigns"),
        files: list[UploadFile] = File(..., description="items files: .jsonl, .json or .parquet"),
        annotators: str | None = Form(None, description="annotator names, separated by spaces or commas"),
    ) -> dict[str, Any]:
        """Create a campaign from uploaded items files (as `prefloop campaign create --items`)."""
        try:
            spec = CampaignIn.model_validate_json(campaign)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise HTTPException(422, f"campaign: {loc + ': ' if loc else ''}{err['msg']}") from None
        names = _parse_annotators(annotators)
        items = read_uploads(files)  # parsed before the write transaction starts
        with store.write() as s:
            c, joined = create_with_items(s, spec, items, names)
            return {
                "campaign": campaign_summary(s, c, _admin),
                "items_created": len(items),
                "annotators": joined["annotators"] if joined else [],
            }

    @app.post("/api/campaigns/{cid}/items/upload", tags=["admin"])
    def add_items_from_files(
        cid: Id,
        admin: AdminUser,
        files: list[UploadFile] = File(..., description="items files: .jsonl, .json or .parquet"),
    ) -> dict[str, Any]:
        """Add items from uploaded files (as `prefloop campaign add-items --items`)."""
        with store.read() as s:
            get_campaign(s, cid, admin)
        items = read_uploads(files)
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            ids = insert_items(s, c, items)
            tasks = assign_mod.assign(s, c)
            return {"created": len(ids), "item_ids": ids, "tasks_created": tasks}

    @app.patch("/api/campaigns/{cid}", tags=["admin"])
    def edit_campaign(cid: Id, body: CampaignPatch, admin: AdminUser) -> dict[str, Any]:
        """Change a campaign's settings; raising the overlap hands out the extra tasks at once.

        Lowering the overlap withdraws nothing already handed out; feedback types apply to the
        next submissions (stored judgments keep what they hold)."""
        with store.write() as s:
            c = get_campaign(s, cid, admin, lock=True)
            changes = body.model_dump(exclude_unset=True)
            if "rating_scale" in changes:
                c.rating_lo, c.rating_hi = changes.pop("rating_scale")
            for key, value in changes.items():
                setattr(c, key, list(value) if key == "feedback_types" else value)
            s.flush()
            if "overlap" in changes:
                assign_mod.assign(s, c)
            return campaign_summary(s, c, admin)

    @app.get("/api/campaigns/{cid}/annotators", tags=["admin"])
    def list_annotators(cid: Id, admin: AdminUser) -> list[dict[str, Any]]:
        """The campaign's annotators with their task counts and number of live tokens."""
        with store.read() as s:
            get_campaign(s, cid, admin)
            rows = s.execute(
                select(User)
                .join(CampaignAnnotator, CampaignAnnotator.user_id == User.id)
                .where(CampaignAnnotator.campaign_id == cid)
                .order_by(User.name)
            ).scalars()
            ttl = app.state.settings.token_ttl
            out = []
            for u in rows:
                live = select(func.count()).select_from(ApiToken).where(ApiToken.user_id == u.id)
                if ttl is not None:  # expired tokens no longer count
                    live = live.where(ApiToken.created_at > utcnow() - ttl)
                n_tokens = s.scalar(live)
                out.append(
                    {
                        "name": u.name,
                        "role": u.role,
                        "progress": assign_mod.task_counts(s, cid, u.id),
                        "tokens": int(n_tokens or 0),
                    }
                )
            return out
