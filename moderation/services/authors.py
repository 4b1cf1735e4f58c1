"""Authors: bans and their moderation history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from moderation.db import begin_write, utcnow
from moderation.errors import InvalidInput, NotFound
from moderation.models import STATUSES, AuthorBan, Comment


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
    """Lift an author's ban."""
    begin_write(session)
    ban = session.get(AuthorBan, author_id)
    if ban is None:
        raise NotFound(f"author {author_id!r} is not banned")
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
