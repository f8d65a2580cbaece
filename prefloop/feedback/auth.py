"""Accounts, bearer tokens and the FastAPI dependencies that guard the API.

- Tokens are 32 random bytes (urlsafe base64). Only their sha256 digest is stored: a token has
  256 bits of entropy, so a fast unsalted hash is enough to make a leaked DB useless for login,
  and lookup by digest stays an indexed equality query.
- Passwords (which have little entropy) use hashlib.scrypt with a 16-byte random salt, stored as
  "scrypt$n$r$p$salt_hex$hash_hex" so the cost parameters can change later.
- Comparisons of secrets use hmac.compare_digest (constant time).
- Every failed login costs one scrypt, whether the name is unknown, has only tokens (no
  password) or gave a wrong password, so timing does not tell which names exist.
- Tokens expire `ttl` after they were issued (the server's --token-ttl-hours; checked at each
  request, so changing it applies to tokens already out); an admin revokes them by deleting
  their rows (`revoke_tokens`), and /api/logout deletes the caller's own.
- User names are case-insensitive: `Alice` and `alice` are one user (`find_user`).
- `LoginLimiter` counts failed logins per user name and per client address; past the limit
  within the window, logins for that name (or from that address) answer 429 until the lockout
  ends, even with the right password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, cast

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.orm import Session

from prefloop.feedback.store import ApiToken, User, utcnow

ROLES = ("admin", "annotator")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(digest.hex(), hash_hex)


# A real hash of a random password with today's cost parameters: verifying against it costs
# exactly what verifying a real user's password costs.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def issue_token(session: Session, user: User | Principal) -> str:
    """Create a token for `user`, store its digest, return the raw token (shown once)."""
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    return token


def create_user(
    session: Session, name: str, role: str, password: str | None = None, password_hash: str | None = None
) -> tuple[User, str]:
    """Add a user (flushes so it has an id) and return it with a fresh raw token.

    Pass `password_hash` (from `hash_password`) to hash before opening a write transaction."""
    if password_hash is None and password:
        password_hash = hash_password(password)
    user = User(name=name, role=role, password_hash=password_hash)
    session.add(user)
    session.flush()
    return user, issue_token(session, user)


@dataclass(frozen=True)
class Principal:
    """Who is calling: enough of a user for access checks, detached from any session."""

    id: int
    name: str
    role: str


def find_user(session: Session, name: str) -> User | None:
    """The user called `name`, compared case-insensitively (a unique index on lower(name))."""
    return session.scalars(select(User).where(func.lower(User.name) == name.lower())).first()


def user_for_token(
    session: Session | Connection, token: str, ttl: dt.timedelta | None = None
) -> Principal | None:
    """The user holding `token` (not expired: issued less than `ttl` ago), looked up by its
    sha256 digest (one indexed query)."""
    digest = hash_token(token)
    query = (
        select(User.id, User.name, User.role, ApiToken.token_hash)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    )
    if ttl is not None:
        query = query.where(ApiToken.created_at > utcnow() - ttl)
    row = session.execute(query).first()
    # Compare again in constant time so the final equality check leaks nothing through timing.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, row.role)


def login(session: Session, name: str, password: str) -> User | None:
    """The user if `password` is theirs. Always runs exactly one scrypt (see the module doc)."""
    user = find_user(session, name)
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    ok = verify_password(password, stored)
    return user if ok and stored is not _DUMMY_HASH else None


def revoke_tokens(session: Session, user_id: int, token_id: int | None = None) -> int:
    """Delete the user's tokens (or only token `token_id`); returns how many were revoked."""
    query = delete(ApiToken).where(ApiToken.user_id == user_id)
    if token_id is not None:
        query = query.where(ApiToken.id == token_id)
    return cast(CursorResult[Any], session.execute(query)).rowcount or 0


class LoginLimiter:
    """Failed logins per key ("name:alice", "addr:10.0.0.7") in a sliding window; `max_failures`
    failures within `window_s` lock the key for `lockout_s`. In memory, per server process."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until every key is unlocked (0 when none is locked)."""
        now = time.monotonic()
        with self._lock:
            return max([self._locked_until.get(k, 0.0) - now for k in keys] + [0.0])

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._failures.setdefault(key, deque())
                times.append(now)
                while times and times[0] < now - self.window_s:
                    times.popleft()
                if len(times) >= self.max_failures:
                    self._locked_until[key] = now + self.lockout_s
                    times.clear()
            if len(self._failures) > 100_000:  # forget old keys so memory stays bounded
                self._failures = {
                    k: v for k, v in self._failures.items() if v and v[-1] > now - self.window_s
                }

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


# ---------------------------------------------------------------------------------------------
# FastAPI dependencies (the app stores its `Store` on app.state.store)


MISSING_TOKEN = "missing bearer token: send 'Authorization: Bearer <token>'"
BAD_TOKEN = "invalid, expired or revoked token: log in again (or ask an admin for a new token)"


def bearer_token(header: str | None) -> str | None:
    """The token of an 'Authorization: Bearer <token>' header value, or None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    return token


class TokenCache:
    """Successful token lookups of the last `seconds` (digest -> user), so a client's burst of
    requests costs one database lookup. An entry never outlives its token's expiry. Revocations
    made through this server process clear it at once; ones made elsewhere (the CLI, another
    worker) take effect within `seconds`. 0 turns it off."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, digest: str, user: Principal, valid_s: float) -> None:
        if self.seconds <= 0:
            return
        if len(self._entries) > 100_000:
            self._entries = {}
        self._entries[digest] = (user, time.monotonic() + min(self.seconds, valid_s))

    def clear(self) -> None:
        self._entries = {}


def cached_user(request_app: object, header: str | None) -> Principal | None:
    """The user of a recently checked token, without touching the database (or None)."""
    token = bearer_token(header)
    return None if token is None else request_app.state.token_cache.get(hash_token(token))  # type: ignore[attr-defined]


def authenticate(request_app: object, header: str | None) -> tuple[Principal | None, str]:
    """(the user, "") or (None, why): the token lookup shared by the body guard and `current_user`."""
    token = bearer_token(header)
    if token is None:
        return None, MISSING_TOKEN
    state = request_app.state  # type: ignore[attr-defined]
    digest = hash_token(token)
    ttl = state.settings.token_ttl
    with state.store.read_core() as conn:
        row = conn.execute(
            select(User.id, User.name, User.role, ApiToken.token_hash, ApiToken.created_at)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == digest)
        ).first()
    now = utcnow()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None, BAD_TOKEN
    if ttl is not None and row.created_at + ttl <= now:
        return None, BAD_TOKEN
    user = Principal(row.id, row.name, row.role)
    valid_s = (row.created_at + ttl - now).total_seconds() if ttl is not None else float("inf")
    state.token_cache.put(digest, user, valid_s)
    return user, ""


_bearer_scheme = HTTPBearer(auto_error=False, description="A token from POST /api/login or an admin.")


async def current_user(
    request: Request, _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]
) -> Principal:
    """The authenticated user (401 without a valid token). The app's guard authenticates every
    /api request before FastAPI reads it; its answer is reused here (async: no thread hop)."""
    user = request.scope.get("state", {}).get("principal") or cached_user(
        request.app, request.headers.get("authorization")
    )
    if user is None:
        user, why = await anyio.to_thread.run_sync(
            authenticate, request.app, request.headers.get("authorization")
        )
        if user is None:
            raise HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})
    return user


async def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if user.role != "admin":
        raise HTTPException(403, "admin role required")
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
