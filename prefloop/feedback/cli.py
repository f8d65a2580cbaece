"""`prefloop serve` and `prefloop campaign ...`: run the feedback server, manage campaigns offline.

    prefloop serve --db sqlite:///feedback.db --host 127.0.0.1 --port 8000 --admin-password S3cret!!
    prefloop campaign create --db sqlite:///feedback.db --name demo --items samples_a.jsonl samples_b.jsonl \
        --feedback-types ranking pairwise --overlap 2 --annotators alice bob
    prefloop campaign add-annotators --db ... --campaign 1 --names carol
    prefloop campaign add-items --db ... --campaign 1 --items more.jsonl
    prefloop campaign export --db ... --campaign 1 --kind pairwise --mode raw --output prefs.jsonl
    prefloop campaign token --db ... --name alice        # a new token for a user who lost theirs
    prefloop campaign revoke-token --db ... --name alice # revoke all of alice's tokens
    prefloop campaign list --db ...

The campaign commands work on the database directly (no server needed); every command
migrates the database to the latest schema first. Only `campaign create` (and `serve`) make a
new SQLite file: the others refuse a path that does not exist, so a typo cannot start an empty
database.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError

from prefloop.config import parse_args


@dataclass
class ServeConfig:
    """Run the feedback server (web UI + REST API)."""

    db: str = "sqlite:///feedback.db"
    """Database URL: sqlite:///path.db (default) or postgresql://user:pass@host/dbname."""
    host: str = "127.0.0.1"
    """Interface to listen on (127.0.0.1 = this machine only)."""
    port: int = 8000
    """TCP port."""
    admin_password: str | None = None
    """Password of the 'admin' account created on first start; without it a token is printed."""
    log_level: str = "info"
    """uvicorn log level (critical, error, warning, info, debug)."""
    workers: int = 1
    """Server processes. One is plenty for SQLite; use more with PostgreSQL under heavy load."""
    token_ttl_hours: float = 720.0
    """API tokens stop working this many hours after they were issued (0 = never)."""
    max_body_mb: float = 32.0
    """Largest request body accepted, in MiB (413 above it)."""
    login_max_failures: int = 5
    """Failed logins for one user name within --login-window-s before the name is locked."""
    login_address_max_failures: int = 50
    """Failed logins from one client address within --login-window-s before it is locked."""
    login_window_s: float = 900.0
    """Window over which failed logins are counted (seconds)."""
    login_lockout_s: float = 900.0
    """How long a locked name or address is refused (seconds)."""
    auth_cache_s: float = 2.0
    """Seconds a checked token is remembered per process (revocations from the CLI or another
    worker apply within this time; 0 = check the database on every request)."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""

    def settings(self) -> Any:
        from prefloop.feedback.app import ServerSettings

        return ServerSettings(
            token_ttl_hours=self.token_ttl_hours,
            max_body_mb=self.max_body_mb,
            login_max_failures=self.login_max_failures,
            login_address_max_failures=self.login_address_max_failures,
            login_window_s=self.login_window_s,
            login_lockout_s=self.login_lockout_s,
            auth_cache_s=self.auth_cache_s,
        )


@dataclass
class CreateConfig:
    """Create a campaign from a JSONL of items (the `prefloop generate` output works as is)."""

    items: list[str] = field(default_factory=list)
    """Items files: .jsonl/.json/.parquet or HF datasets dirs; lines {"prompt", "responses": [...]}. With several
    files (e.g. `prefloop generate` runs of different models), the responses of equal prompts join one item."""
    name: str = "campaign"
    """Campaign name shown to annotators."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    feedback_types: list[str] = field(default_factory=lambda: ["ranking"])
    """Feedback collected: any of pairwise, ranking, rating, binary, critique, edit."""
    overlap: int = 1
    """Annotators per item (k)."""
    anonymous: bool = True
    """Hide model names from annotators until they have voted."""
    rating_scale: tuple[float, float] = (1.0, 7.0)
    """Lowest and highest rating."""
    instructions: str = ""
    """Instructions shown above every task."""
    annotators: list[str] = field(default_factory=list)
    """Annotators to add right away (new names get accounts; their tokens are printed)."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class AddAnnotatorsConfig:
    """Add annotators to a campaign; prints a token for each new account."""

    campaign: int = 0
    """Campaign id."""
    names: list[str] = field(default_factory=list)
    """Annotator names (new names become annotator accounts)."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class AddItemsConfig:
    """Add items to an existing campaign."""

    campaign: int = 0
    """Campaign id."""
    items: list[str] = field(default_factory=list)
    """Items files (same formats as `campaign create`; equal prompts across files join one item)."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class ExportConfig:
    """Export a campaign's judgments as training records (JSONL)."""

    campaign: int = 0
    """Campaign id."""
    kind: Literal["pairwise", "ranked", "binary", "rating", "demonstration", "critique"] = "pairwise"
    """Record kind to write (critique: SFT demonstrations of writing the annotators' critiques)."""
    mode: Literal["raw", "consensus"] = "raw"
    """raw: one record per annotator; consensus: annotators merged per item."""
    output: str = "export.jsonl"
    """Output file (.jsonl)."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class TokenConfig:
    """Issue a new API token for an existing user (older tokens stay valid)."""

    name: str = ""
    """User name."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class RevokeTokenConfig:
    """Revoke every API token of a user (they are logged out everywhere; a password still works)."""

    name: str = ""
    """User name."""
    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


@dataclass
class ListConfig:
    """List campaigns with their item, task and judgment counts."""

    db: str = "sqlite:///feedback.db"
    """Database URL."""
    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""


# ---------------------------------------------------------------------------------------------
# Reading items


class ItemsError(ValueError):
    """A bad items file; the message names file, line and field."""


def _item_from_row(row: Any) -> dict[str, Any]:
    """Accepted shapes: {"prompt", "responses": [{"text", "model"?, "checkpoint"?} | str], "gold"?}
    and {"prompt", "chosen", "rejected"} (two responses). Other keys (logprob, meta) are ignored."""
    if not isinstance(row, dict):
        raise ItemsError(f"expected a JSON object, got {type(row).__name__}")
    if "responses" not in row and "chosen" in row and "rejected" in row:
        row = {"prompt": row.get("prompt"), "responses": [row["chosen"], row["rejected"]]}
    if "responses" not in row:
        raise ItemsError(
            "field 'responses': missing (generate them with `prefloop generate --num-responses K`)"
        )
    responses = row["responses"]
    if not isinstance(responses, list):
        raise ItemsError("field 'responses': expected a list")
    clean = []
    for i, r in enumerate(responses):
        if isinstance(r, str):
            clean.append({"text": r})
        elif isinstance(r, dict) and "text" in r:
            clean.append({k: r[k] for k in ("text", "model", "checkpoint") if r.get(k) is not None})
        else:
            raise ItemsError(f"field 'responses[{i}]': expected a string or an object with 'text'")
    item = {"prompt": row.get("prompt"), "responses": clean}
    if row.get("gold") is not None:
        item["gold"] = row["gold"]
    return item


def _validate(item: dict[str, Any]) -> dict[str, Any]:
    from prefloop.feedback.schemas import ItemIn

    try:
        return ItemIn.model_validate(item).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ItemsError(f"field '{loc}': {err['msg']}" if loc else err["msg"]) from None


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """Validated items of a campaign file; errors read like 'items.jsonl:7: field 'responses': ...'.

    Rows come from `prefloop.data.io.read_rows` (JSONL / JSON / Parquet / HF datasets dir / folder)."""
    from prefloop.data.io import DataError, read_rows

    path = Path(path)
    items = []
    try:
        for where, row in read_rows(path):
            try:
                items.append(_validate(_item_from_row(row)))
            except ItemsError as exc:
                raise ItemsError(f"{where}: {exc}") from None
    except DataError as exc:
        raise ItemsError(str(exc)) from None
    if not items:
        raise ItemsError(f"{path}: no items")
    return items


def read_item_files(paths: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Items of one or several files. Across files, items with the same prompt merge into one item
    holding all their responses (in file order), so responses of different models get compared.

    An item with a gold answer is never merged: its positions refer to its own responses."""
    import json

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ItemsError("no items file given: pass --items FILE [FILE ...]")
    if len(paths) == 1:
        return read_items(paths[0])
    merged: dict[str, dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    for path in paths:
        for item in read_items(path):
            if item.get("gold") is not None:
                kept.append(item)
                continue
            key = json.dumps(item["prompt"], sort_keys=True)
            if key in merged:
                merged[key]["responses"].extend(item["responses"])
            else:
                merged[key] = item
                kept.append(item)
    return [_validate(item) for item in kept]  # re-check limits (e.g. responses per item) after merging


# ---------------------------------------------------------------------------------------------
# Commands


def ensure_admin(db_url: str, password: str | None) -> str | None:
    """Create the 'admin' account on first start; returns its token when one was made.

    With a password, an existing admin's password is reset to it (whoever runs `serve` owns the DB)."""
    from prefloop.feedback import auth
    from prefloop.feedback.store import Store

    store = Store(db_url)
    try:
        with store.write() as s:
            admin = auth.find_user(s, "admin")
            if admin is None:
                _, token = auth.create_user(s, "admin", "admin", password)
                return token
            if password and not auth.verify_password(password, admin.password_hash):
                admin.password_hash = auth.hash_password(password)
            return None
    finally:
        store.dispose()


def display_url(db_url: str) -> str:
    """`db_url` with any password masked (for logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show only its scheme
        return db_url.split(":", 1)[0] + "://..."


def serve(cfg: ServeConfig) -> None:
    import uvicorn

    from prefloop.feedback.app import create_app
    from prefloop.feedback.schemas import password_problem
    from prefloop.feedback.store import upgrade

    if cfg.admin_password is not None and (problem := password_problem(cfg.admin_password)):
        raise SystemExit(f"error: --admin-password: {problem}")
    settings = cfg.settings()
    upgrade(cfg.db)
    token = ensure_admin(cfg.db, cfg.admin_password)
    if token and not cfg.admin_password:
        print(f"created user 'admin'; its API token (shown once): {token}", flush=True)
    elif token:
        print("created user 'admin' with the given password", flush=True)
    print(f"prefloop feedback server on http://{cfg.host}:{cfg.port} (db: {display_url(cfg.db)})", flush=True)
    if cfg.workers > 1:
        # Each worker process builds its own app (and connection pool) from the environment.
        import dataclasses
        import json

        os.environ[DB_ENV] = cfg.db
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
        uvicorn.run(
            "prefloop.feedback.cli:app_from_env",
            factory=True,
            host=cfg.host,
            port=cfg.port,
            log_level=cfg.log_level,
            workers=cfg.workers,
        )
        return
    app = create_app(cfg.db, migrate=False, settings=settings)
    tune_gc_for_serving()
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


GC_THRESHOLDS = (20_000, 50, 1_000)


def tune_gc_for_serving() -> None:
    """Make the cyclic garbage collector cheap for a long-running server process.

    With CPython's default thresholds (700, 10, 10) a full collection ran every ~70k allocations
    and walked every object the app holds (SQLAlchemy's mappers and caches, FastAPI's routes):
    those pauses stalled all in-flight requests and were most of the submit p99 under load
    (benchmarks/feedback_load.py, PostgreSQL: submit p99 171 -> 115 ms, medians of three runs). Objects
    alive at start-up are frozen (never scanned again) and collections run less often; reference
    counting still frees everything that is not in a cycle at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


DB_ENV = "PREFLOOP_FEEDBACK_DB"
SETTINGS_ENV = "PREFLOOP_FEEDBACK_SETTINGS"


def app_from_env() -> Any:
    """App factory for `serve --workers N` (uvicorn imports it in every worker process)."""
    import json

    from prefloop.feedback.app import ServerSettings, create_app

    settings = ServerSettings(**json.loads(os.environ.get(SETTINGS_ENV, "{}")))
    app = create_app(os.environ[DB_ENV], migrate=False, settings=settings)
    tune_gc_for_serving()
    return app


def _open(db_url: str, create: bool = False) -> Any:
    """The store at `db_url`, migrated. Without `create`, a SQLite file must already exist."""
    from prefloop.feedback.store import Store, is_sqlite, normalize_url, upgrade

    url = normalize_url(db_url)
    if not create and is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).is_file():
            raise SystemExit(
                f"error: no database at {path} (check --db; `prefloop campaign create` makes a new one)"
            )
    upgrade(db_url)
    return Store(db_url)


def _campaign(s: Any, cid: int) -> Any:
    from prefloop.feedback.store import Campaign

    c = s.get(Campaign, cid)
    if c is None:
        raise SystemExit(f"error: campaign {cid} not found")
    return c


def _print_tokens(result: dict[str, Any]) -> None:
    for a in result["annotators"]:
        note = a["token"] if a["token"] else "(existing account; token unchanged)"
        print(f"  {a['name']}\t{note}")


def create(cfg: CreateConfig) -> int:
    from prefloop.feedback.admin import create_with_items
    from prefloop.feedback.schemas import CampaignIn

    if not cfg.items:
        raise SystemExit("error: --items FILE [FILE ...] is required")
    from prefloop.feedback.schemas import AnnotatorsIn

    try:
        if cfg.annotators:
            AnnotatorsIn(names=cfg.annotators)
        spec = CampaignIn(
            name=cfg.name,
            feedback_types=cast(Any, cfg.feedback_types),  # checked by CampaignIn
            overlap=cfg.overlap,
            anonymous=cfg.anonymous,
            rating_scale=cfg.rating_scale,
            instructions=cfg.instructions,
        )
        items = read_item_files(cfg.items)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise SystemExit(f"error: {loc}: {err['msg']}" if loc else f"error: {err['msg']}") from None
    except ItemsError as exc:
        raise SystemExit(f"error: {exc}") from None
    store = _open(cfg.db, create=True)
    with store.write() as s:
        c, result = create_with_items(s, spec, items, cfg.annotators)
        cid = c.id
    print(f"created campaign {cid} ({spec.name!r}) with {len(items)} items")
    if result:
        print("annotators (name, token):")
        _print_tokens(result)
    store.dispose()
    return cid


def add_annotators(cfg: AddAnnotatorsConfig) -> None:
    from prefloop.feedback.app import join_annotators
    from prefloop.feedback.schemas import AnnotatorsIn

    try:
        names = AnnotatorsIn(names=cfg.names).names
    except ValidationError as exc:
        raise SystemExit(f"error: {exc.errors()[0]['msg']}") from None
    store = _open(cfg.db)
    with store.write() as s:
        result = join_annotators(s, _campaign(s, cfg.campaign), names)
    print(f"campaign {cfg.campaign}: annotators (name, token); {result['tasks_created']} new tasks")
    _print_tokens(result)
    store.dispose()


def add_items(cfg: AddItemsConfig) -> None:
    from prefloop.feedback.app import insert_items
    from prefloop.feedback.assignment import assign

    try:
        items = read_item_files(cfg.items)
    except ItemsError as exc:
        raise SystemExit(f"error: {exc}") from None
    store = _open(cfg.db)
    with store.write() as s:
        c = _campaign(s, cfg.campaign)
        insert_items(s, c, items)
        tasks = assign(s, c)
    print(f"campaign {cfg.campaign}: added {len(items)} items, {tasks} new tasks")
    store.dispose()


def export_cmd(cfg: ExportConfig) -> None:
    from prefloop.feedback import export

    store = _open(cfg.db)
    with store.read() as s:
        _campaign(s, cfg.campaign)
        try:
            records = export.export_records(s, cfg.campaign, cfg.kind, cfg.mode)
        except export.ExportError as exc:
            raise SystemExit(f"error: {exc}") from None
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export.to_jsonl(records), encoding="utf-8")
    print(f"wrote {len(records)} {cfg.kind} records ({cfg.mode}) to {out}")
    store.dispose()


def token_cmd(cfg: TokenConfig) -> None:
    from prefloop.feedback import auth

    store = _open(cfg.db)
    with store.write() as s:
        user = auth.find_user(s, cfg.name)
        if user is None:
            raise SystemExit(f"error: user {cfg.name!r} not found")
        token = auth.issue_token(s, user)
        name = user.name
    print(f"{name}\t{token}")
    store.dispose()


def revoke_token_cmd(cfg: RevokeTokenConfig) -> None:
    from prefloop.feedback import auth

    store = _open(cfg.db)
    with store.write() as s:
        user = auth.find_user(s, cfg.name)
        if user is None:
            raise SystemExit(f"error: user {cfg.name!r} not found")
        n = auth.revoke_tokens(s, user.id)
        name = user.name
    print(f"{name}: revoked {n} token(s)")
    store.dispose()


def list_cmd(cfg: ListConfig) -> None:
    from sqlalchemy import select

    from prefloop.feedback.app import campaign_stats
    from prefloop.feedback.store import Campaign

    store = _open(cfg.db)
    with store.read() as s:
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            stats = campaign_stats(s, c.id)
            print(
                f"{c.id}\t{c.name}\titems={stats['n_items']}\tannotators={stats['n_annotators']}\t"
                f"tasks={stats['n_tasks']}\tjudgments={stats['n_judgments']}\ttypes={','.join(c.feedback_types)}"
            )
    store.dispose()


SUBCOMMANDS: dict[str, tuple[type, Any]] = {
    "create": (CreateConfig, create),
    "add-annotators": (AddAnnotatorsConfig, add_annotators),
    "add-items": (AddItemsConfig, add_items),
    "export": (ExportConfig, export_cmd),
    "token": (TokenConfig, token_cmd),
    "revoke-token": (RevokeTokenConfig, revoke_token_cmd),
    "list": (ListConfig, list_cmd),
}


def _campaign_usage() -> str:
    lines = ["usage: prefloop campaign <subcommand> [--help] [flags]", "", "subcommands:"]
    lines += [f"  {name.ljust(15)} {cls.__doc__}" for name, (cls, _) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str], command: str = "serve") -> None:
    if command == "serve":
        serve(parse_args(ServeConfig, argv, prog="prefloop serve"))
        return
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_campaign_usage())
        return
    sub, rest = argv[0], argv[1:]
    if sub not in SUBCOMMANDS:
        print(f"prefloop campaign: unknown subcommand {sub!r}\n\n{_campaign_usage()}", file=sys.stderr)
        raise SystemExit(2)
    cls, run = SUBCOMMANDS[sub]
    run(parse_args(cls, rest, prog=f"prefloop campaign {sub}"))


if __name__ == "__main__":
    main(sys.argv[1:])
