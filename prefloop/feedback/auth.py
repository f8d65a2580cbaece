"""Accounts, bearer tokens and the FastAPI dependencies that guard the API.

- Tokens are 32 random bytes (urlsafe base64). Only their sha256 digest is stored: a token has
  256 bits of entropy, so a fast unsalted hash is enough to make a leaked DB useless for login,
  and lookup by digest stays an indexed equality query.
- Passwords (which have little entropy) use hashlib.scrypt with a 16-byte random salt, stored as
  "scrypt$n$r$p$salt_hex$hash_hex" so the cost parameters can change later.
- Comparisons of secrets use hmac.compare_digest (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.feedback.store import ApiToken, User

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


def user_for_token(session: Session, token: str) -> Principal | None:
    """The user holding `token`, looked up by its digest (one indexed query)."""
    digest = hash_token(token)
    row = session.execute(
        select(User.id, User.name, User.role, ApiToken.token_hash)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    ).first()
    # Compare again in constant time so the final equality check leaks nothing through timing.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, row.role)


def login(session: Session, name: str, password: str) -> User | None:
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        # Hash anyway so a wrong name and a wrong password take the same time.
        verify_password(password, hash_password("x"))
        return None
    return user if verify_password(password, user.password_hash) else None


# ---------------------------------------------------------------------------------------------
# FastAPI dependencies (the app stores its `Store` on app.state.store)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def current_user(request: Request) -> Principal:
    """The authenticated user (401 without a valid token)."""
    token = _bearer(request)
    with request.app.state.store.read() as session:
        user = user_for_token(session, token)
    if user is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return user


def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if user.role != "admin":
        raise HTTPException(403, "admin role required")
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
