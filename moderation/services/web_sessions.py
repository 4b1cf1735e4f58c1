"""Moderators' sign-ins on the pages, kept on the server: start, resume on each request, end.

The session cookie carries only a random token; the table holds its SHA-256, the key and two times. A
cookie is worth nothing without its row, and each request checks the row and its key, so logout, the
lifetime, the idle timeout and a revoked key (or one that lost its role) end a session at once, whatever
the cookie says and whoever copied it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from moderation.db import begin_write
from moderation.models import ApiKey, WebSession
from moderation.services.keys import hash_token

TOKEN_BYTES = 32
# last_seen_at is written at most this often, not on every request; the idle timeout is that coarse.
TOUCH_INTERVAL = timedelta(seconds=60)

UNKNOWN, EXPIRED, KEY_INVALID = "unknown", "expired", "key_invalid"


@dataclass(frozen=True)
class SessionLimits:
    """How long a sign-in lasts at most, and without a request."""

    lifetime: timedelta
    idle: timedelta


@dataclass(frozen=True)
class Resumed:
    """The outcome of a request's session check: the key, or why the session is over."""

    key: ApiKey | None
    ended: str | None = None


def start(session: Session, key_id: int, limits: SessionLimits, *, now: datetime,
          replaces: str | None = None) -> str:
    """Record a new sign-in for `key_id` and return its token, ending the session it `replaces`."""
    begin_write(session)
    # Sessions nobody came back to end here, so the table keeps only live ones (a few per moderator).
    revoked = select(ApiKey.id).where(ApiKey.revoked_at.is_not(None))
    session.execute(delete(WebSession).where(or_(WebSession.created_at <= now - limits.lifetime,
                                                 WebSession.last_seen_at <= now - limits.idle,
                                                 WebSession.key_id.in_(revoked))))
    if replaces:
        session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(replaces)))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(WebSession(token_hash=hash_token(token), key_id=key_id, created_at=now, last_seen_at=now))
    session.commit()
    return token


def resume(session: Session, token: str, limits: SessionLimits, *, now: datetime,
           roles: tuple[str, ...]) -> Resumed:
    """Return the key behind `token` if its session is still valid; end it if it is over."""
    if not token or len(token) > 200:
        return Resumed(None, UNKNOWN)
    row = session.execute(select(WebSession, ApiKey).join(ApiKey, ApiKey.id == WebSession.key_id)
                          .where(WebSession.token_hash == hash_token(token))).first()
    if row is None:
        session.commit()
        return Resumed(None, UNKNOWN)
    record, key = row
    ended = None
    if key.revoked_at is not None or key.role not in roles:
        ended = KEY_INVALID
    elif now >= record.created_at + limits.lifetime or now >= record.last_seen_at + limits.idle:
        ended = EXPIRED
    if ended is not None:
        begin_write(session)
        session.execute(delete(WebSession).where(WebSession.id == record.id))
        session.commit()
        return Resumed(None, ended)
    if now - record.last_seen_at >= TOUCH_INTERVAL:
        begin_write(session)
        # Only if no other request moved it meanwhile: one write per interval, never backwards.
        session.execute(update(WebSession).where(WebSession.id == record.id,
                                                 WebSession.last_seen_at == record.last_seen_at)
                        .values(last_seen_at=now))
    # End the transaction: a use case that writes next starts its own (SQLite: BEGIN IMMEDIATE).
    session.commit()
    return Resumed(key)


def end(session: Session, token: str) -> None:
    """End the session of `token` (logout); a copy of its cookie opens nothing from now on."""
    begin_write(session)
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))
    session.commit()
