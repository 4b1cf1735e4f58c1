"""Authors: bans, the anonymised bans of erased authors, and their moderation history."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import weakref
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, Engine, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import begin_write, utcnow
from moderation.errors import InvalidInput, NotFound
from moderation.models import STATUSES, AnonymisedBan, AuthorBan, Comment, ServerKey

PSEUDONYM_KEY = "author_pseudonyms"
# The key once read from a database: it never changes there, so each process reads it once per engine.
_keys: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class AuthorHistory:
    author_id: str
    approved: int
    pending: int
    rejected: int
    banned: bool
    ban_until: datetime | None


def in_force(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Return the condition for a ban that is in force at `now`: for good, or until a later time."""
    return or_(AuthorBan.until.is_(None), AuthorBan.until > now)


def ban_in_force(author_id: str | BindParameter[str], now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Return the condition for a ban of `author_id` that is in force at `now` (values or bound parameters)."""
    return and_(AuthorBan.author_id == author_id, in_force(now))


def _pseudonym_key(session: Session, *, create: bool) -> bytes | None:
    """Return the key of author pseudonyms, generating it (in the caller's write transaction) if asked."""
    engine = session.get_bind()
    if (key := _keys.get(engine)) is not None:
        return key
    stored = session.get(ServerKey, PSEUDONYM_KEY)
    if stored is not None:
        _keys[engine] = key = bytes.fromhex(stored.value)
        return key
    if not create:
        return None
    try:
        with session.begin_nested():  # a concurrent erasure may generate it first: then theirs is the key
            session.add(ServerKey(name=PSEUDONYM_KEY, value=secrets.token_hex(32)))
    except IntegrityError:
        pass
    # Cached only once read back committed: a rolled-back key must not outlive its transaction here.
    return bytes.fromhex(session.get(ServerKey, PSEUDONYM_KEY).value)


def author_pseudonym(session: Session, author_id: str, *, create: bool = False) -> str | None:
    """Return the keyed hash (HMAC-SHA256) an erased author's ban is kept under; None while there is no key.

    The key is generated once and stored in the database, so it survives a rotation of the secret key;
    without it the hash cannot be recomputed from a list of guessed ids.
    """
    key = _pseudonym_key(session, create=create)
    if key is None:
        return None
    return hmac.new(key, author_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def anonymised_ban_in_force(author_key: str | None | BindParameter[str],
                            now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Return the condition for an anonymised ban under `author_key` that is in force at `now`."""
    return and_(AnonymisedBan.author_key == author_key,
                or_(AnonymisedBan.until.is_(None), AnonymisedBan.until > now))


def anonymise_ban(session: Session, author_id: str) -> bool:
    """Replace an author's ban by an anonymised one under their pseudonym; the caller commits."""
    ban = session.get(AuthorBan, author_id)
    if ban is None:
        return False
    author_key = author_pseudonym(session, author_id, create=True)
    kept = session.get(AnonymisedBan, author_key) or AnonymisedBan(author_key=author_key)
    kept.until, kept.created_at = ban.until, ban.created_at
    session.add(kept)
    session.delete(ban)
    return True


def anonymised_ban(session: Session, author_id: str) -> AnonymisedBan | None:
    """Return the anonymised ban kept for an erased author, if any."""
    author_key = author_pseudonym(session, author_id)
    return session.get(AnonymisedBan, author_key) if author_key is not None else None


def ban_author(session: Session, author_id: str, *, reason: str, until: datetime | None, moderator: str) -> AuthorBan:
    """Ban an author (again); their new comments are rejected with `author_banned`."""
    if until is not None and until <= utcnow():
        raise InvalidInput("until must be in the future", fields={"until": ["Must be in the future."]})
    begin_write(session)
    ban = session.get(AuthorBan, author_id) or AuthorBan(author_id=author_id)
    ban.reason, ban.until, ban.banned_by, ban.created_at = reason, until, moderator, utcnow()
    session.add(ban)
    session.commit()
    return ban


def lift_ban(session: Session, author_id: str) -> None:
    """Lift an author's ban, also the anonymised one kept after their erasure."""
    begin_write(session)
    bans = [session.get(AuthorBan, author_id), anonymised_ban(session, author_id)]
    if bans == [None, None]:
        raise NotFound(f"author {author_id!r} is not banned")
    for ban in bans:
        if ban is not None:
            session.delete(ban)
    session.commit()


def histories(session: Session, author_ids: set[str]) -> dict[str, AuthorHistory]:
    """Return each author's counts by status and ban state, in two queries."""
    if not author_ids:
        return {}
    counts: dict[str, dict[str, int]] = {a: dict.fromkeys(STATUSES, 0) for a in author_ids}
    rows = session.execute(
        select(Comment.author_id, Comment.status, func.count())
        .where(Comment.author_id.in_(author_ids)).group_by(Comment.author_id, Comment.status)
    )
    for author_id, status, count in rows:
        counts[author_id][status] = count
    bans = {
        b.author_id: b for b in session.scalars(
            select(AuthorBan).where(AuthorBan.author_id.in_(author_ids), in_force(utcnow()))
        )
    }
    return {
        a: AuthorHistory(a, c["approved"], c["pending"], c["rejected"], a in bans,
                         bans[a].until if a in bans else None)
        for a, c in counts.items()
    }
