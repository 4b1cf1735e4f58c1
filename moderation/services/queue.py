"""The moderators' queue: what waits, who works on it, and their decisions."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from moderation.db import begin_write, utcnow
from moderation.errors import CommentErased, Conflict, InvalidInput
from moderation.models import APPROVED, PENDING, REJECTED, Article, Comment, ModerationAction, Report
from moderation.services.authors import AuthorHistory, histories
from moderation.services.comments import find_article, get_comment
from moderation.services.outbox import record_status_change
from moderation.text import MAX_ID, load_json

PENDING_QUEUE, REPORTED_QUEUE = "pending", "reported"
QUEUES = (PENDING_QUEUE, REPORTED_QUEUE)
SORTS = ("toxicity", "oldest")
DECISIONS = {"approve": APPROVED, "reject": REJECTED}
# Riskiest first: likely threats, then by toxicity (the order of ix_comments_queue).
QUEUE_ORDER = (Comment.threat_likely.desc(), Comment.toxicity.desc(), Comment.id.desc())


@dataclass
class QueueItem:
    comment: Comment
    history: AuthorHistory
    report_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    next_cursor: str | None
    total: int


def _in_queue(queue: str) -> ColumnElement[bool]:
    """Return the condition for a comment waiting in `queue`.

    The reported queue also holds published comments: those a moderator approved before new reports came in.
    """
    if queue == REPORTED_QUEUE:
        return and_(Comment.status.in_((PENDING, APPROVED)), Comment.reported.is_(True))
    return and_(Comment.status == PENDING, Comment.reported.is_(False))


# Cursors name the last comment's place in the queue's order: (threat_likely, toxicity, id) or (threat_likely, id).
# "q1" cursors (before likely threats came first) are no longer accepted: a moderator reloads the first page.
CURSOR_TAG = "q2"


def _encode(sort: str, comment: Comment) -> str:
    threat = int(bool(comment.threat_likely))
    key = [threat, comment.toxicity, comment.id] if sort == "toxicity" else [threat, comment.id]
    return base64.urlsafe_b64encode(json.dumps([CURSOR_TAG, sort, *key]).encode()).decode().rstrip("=")


def _is_id(value: object) -> bool:
    # A larger integer than the database holds would overflow the driver instead of matching nothing.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def _decode(cursor: str, sort: str) -> list:
    try:
        raw = load_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or raw[:2] != [CURSOR_TAG, sort]:
            raise ValueError(raw)
        key = raw[2:]
        if sort == "toxicity":
            valid = (len(key) == 3 and isinstance(key[1], float | int) and not isinstance(key[1], bool)
                     and math.isfinite(key[1]) and _is_id(key[2]))
        else:
            valid = len(key) == 2 and _is_id(key[1])
        if not valid or key[0] not in (0, 1) or isinstance(key[0], bool):
            raise ValueError(key)
        return key
    except (ValueError, IndexError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this service handed out for this sort",
                           fields={"cursor": ["Invalid cursor."]}) from None


def _after(threat: int, rest: ColumnElement[bool]) -> ColumnElement[bool]:
    """Return the condition for the comments after a cursor with `threat` and, among equal flags, `rest`."""
    if threat:
        return or_(Comment.threat_likely.is_(False), and_(Comment.threat_likely.is_(True), rest))
    return and_(Comment.threat_likely.is_(False), rest)


def _ordered(query, sort: str, after: list | None):
    """Order a queue: likely threats first (reason `threat_likely`), then the riskiest or the oldest."""
    if sort == "toxicity":
        if after is not None:
            threat, tox, last = after
            query = query.where(_after(threat, or_(Comment.toxicity < tox,
                                                   and_(Comment.toxicity == tox, Comment.id < last))))
        return query.order_by(*QUEUE_ORDER)
    if after is not None:
        query = query.where(_after(after[0], Comment.id > after[1]))
    return query.order_by(Comment.threat_likely.desc(), Comment.id.asc())


def _items(session: Session, comments: list[Comment]) -> list[QueueItem]:
    history = histories(session, {c.author_id for c in comments})
    reasons: dict[int, dict[str, int]] = {}
    if comments:
        rows = session.execute(
            select(Report.comment_id, Report.reason, func.count())
            .where(Report.comment_id.in_([c.id for c in comments])).group_by(Report.comment_id, Report.reason)
        )
        for comment_id, reason, count in rows:
            reasons.setdefault(comment_id, {})[reason] = count
    return [QueueItem(c, history[c.author_id], reasons.get(c.id, {})) for c in comments]


def list_queue(
    session: Session, *, queue: str, article_id: str | None, sort: str, limit: int, cursor: str | None
) -> QueuePage:
    """Return a page of a queue, likely threats first, then riskiest first (`toxicity`) or oldest first."""
    after = _decode(cursor, sort) if cursor else None
    query = select(Comment).where(_in_queue(queue))
    if article_id is not None:
        article = find_article(session, article_id)
        if article is None:
            return QueuePage([], None, 0)
        query = query.where(Comment.article_id == article.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(_ordered(query, sort, after).limit(limit + 1)))
    next_cursor = _encode(sort, rows[limit - 1]) if len(rows) > limit else None
    return QueuePage(_items(session, rows[:limit]), next_cursor, total)


def claim(
    session: Session, moderator: str, *, limit: int, queue: str = PENDING_QUEUE, article_id: str | None = None,
    minutes: int = 5,
) -> list[QueueItem]:
    """Hand `moderator` up to `limit` comments nobody else holds, likely threats and then the riskiest first,
    for `minutes`.

    On PostgreSQL the rows are locked with SKIP LOCKED, so concurrent claims never overlap; on SQLite
    the write transaction (BEGIN IMMEDIATE) serialises them.
    """
    begin_write(session)
    now = utcnow()
    query = select(Comment).where(
        _in_queue(queue),
        or_(Comment.claimed_until.is_(None), Comment.claimed_until < now, Comment.claimed_by == moderator),
    )
    if article_id is not None:
        query = query.join(Article).where(Article.external_id == article_id)
    query = query.order_by(*QUEUE_ORDER).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Comment)
    comments = list(session.scalars(query))
    for comment in comments:
        comment.claimed_by, comment.claimed_until = moderator, now + timedelta(minutes=minutes)
    session.commit()
    return _items(session, comments)


def decide(
    session: Session, comment_id: int, moderator: str, *, decision: str, reason: str | None = None,
    force: bool = False,
) -> Comment:
    """Approve or reject a comment as `moderator`, with an audit row (see `decide_with_action`)."""
    return decide_with_action(session, comment_id, moderator, decision=decision, reason=reason, force=force)[0]


def decide_with_action(
    session: Session, comment_id: int, moderator: str, *, decision: str, reason: str | None = None,
    force: bool = False,
) -> tuple[Comment, ModerationAction]:
    """Approve or reject a comment as `moderator`; return it with its audit row (what an undo names).

    Refuses (409) a comment another moderator already decided or holds a live claim on, unless `force`,
    and always the tombstone of an erased comment (publishing it would undo nothing but the erasure's audit).
    Taking down an approved comment and restoring a rejected one are decisions like any other.
    """
    begin_write(session)
    comment = get_comment(session, comment_id)
    if comment.erased:
        raise CommentErased(f"comment {comment_id} was erased at its author's request; there is nothing to decide")
    target = DECISIONS[decision]
    now = utcnow()
    if not force:
        # A comment back in the reported queue is anyone's to review again, whoever approved it before.
        if comment.decided_by not in (None, moderator) and not comment.reported:
            raise Conflict(f"comment {comment_id} was already decided ({comment.status}) by {comment.decided_by}; "
                           "send force=true to overrule")
        if comment.claimed_by not in (None, moderator) and comment.claimed_until and comment.claimed_until > now:
            raise Conflict(f"comment {comment_id} is claimed by {comment.claimed_by} until "
                           f"{comment.claimed_until:%H:%M:%S} UTC; send force=true to decide anyway")
    previous = comment.status
    comment.status, comment.decided_by, comment.decided_at = target, moderator, now
    comment.claimed_by = comment.claimed_until = None
    comment.reported = False
    action = ModerationAction(comment_id=comment.id, moderator=moderator, from_status=previous,
                              to_status=target, reasons=[f"moderator_{decision}"], note=reason)
    session.add(action)
    record_status_change(session, comment, previous, by_person=True, reasons=[f"moderator_{decision}"])
    session.commit()
    return comment, action
