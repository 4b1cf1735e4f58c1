"""API keys: create, list, revoke, authenticate. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.errors import Conflict, InvalidInput, NotFound
from moderation.models import ROLES, ApiKey

TOKEN_PREFIX = "mk_"
# Each process remembers a verified token this long, so most requests need no key lookup. A revocation
# takes effect at once in the process that revoked it and within this many seconds everywhere else.
CACHE_SECONDS = 5.0
CACHE_SIZE = 1024


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's id, name and role (never the token)."""

    id: int
    name: str
    role: str


_cache: dict[str, tuple[Principal, float]] = {}
_cache_lock = threading.Lock()


def forget_cached_keys() -> None:
    """Drop every remembered token (after a revocation)."""
    with _cache_lock:
        _cache.clear()


def hash_token(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(session: Session, *, role: str, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its token, which is shown this once and never stored."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", fields={"role": [f"Must be one of: {', '.join(ROLES)}."]})
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("name must be 1 to 100 characters", fields={"name": ["Length must be 1..100."]})
    # Decisions, claims and the audit trail name the moderator by key name: it must say who it was, also
    # after a revocation, so a revoked key keeps its name too.
    duplicate = Conflict(f"a key named {name!r} already exists; choose another name (key names identify "
                         "moderators in decisions and the audit trail)", fields={"name": ["Already taken."]})
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise duplicate
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, token_hash=hash_token(token), prefix=token[:10])
    session.add(key)
    try:
        session.flush()
    except IntegrityError:  # created by someone else between the check and here
        raise duplicate from None
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    """Return every key, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, ident: str) -> ApiKey:
    """Revoke the key with this id or name; its sessions on the moderator pages end at their next request."""
    condition = ApiKey.name == ident
    if ident.isdigit():
        condition = or_(condition, ApiKey.id == int(ident))
    keys = list(session.scalars(select(ApiKey).where(condition, ApiKey.revoked_at.is_(None))))
    if not keys:
        raise NotFound(f"no active key with id or name {ident!r}")
    if len(keys) > 1:
        raise InvalidInput(f"{len(keys)} active keys are named {ident!r}; revoke by id")
    keys[0].revoked_at = utcnow()
    forget_cached_keys()
    return keys[0]


def authenticate(session: Session, token: str) -> Principal | None:
    """Return who an active token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and cached[1] > now:
        return cached[0]
    key = session.scalar(select(ApiKey).where(ApiKey.token_hash == digest, ApiKey.revoked_at.is_(None)))
    if key is None:
        return None
    principal = Principal(key.id, key.name, key.role)
    with _cache_lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[digest] = (principal, now + CACHE_SECONDS)
    # End the read transaction: a use case that writes next starts its own (SQLite: BEGIN IMMEDIATE).
    session.commit()
    return principal
