"""Comment intake, routing and the public listing."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, String, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import UTCDateTime, begin_write, note_comments_changed, utcnow
from moderation.errors import ArticleClosed, DuplicateComment, IdempotencyKeyReused, InvalidInput, NotFound
from moderation.ml import LoadedModel, Score
from moderation.models import APPROVED, BANNED, SUSPECT, Article, Comment, IdempotencyKey, ModerationAction
from moderation.services.authors import anonymised_ban_in_force, author_pseudonym, ban_in_force
from moderation.services.routing import Routing, Rules, Thresholds, audit_draw, route
from moderation.services.wordlists import load_matcher
from moderation.text import MAX_ID


@dataclass(frozen=True)
class NewComment:
    """A validated submission from the site's backend."""

    author_id: str
    author_name: str
    text: str
    parent_id: int | None = None


@dataclass(frozen=True)
class ArticleInfo:
    """What the site's backend said about the article with a submission; None: not sent, keep what is stored."""

    title: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Page:
    comments: list[Comment]
    next_cursor: str | None
    total: int


def find_article(session: Session, external_id: str) -> Article | None:
    """Return the article with the site's id, or None."""
    return session.scalar(select(Article).where(Article.external_id == external_id))


def get_or_create_article(session: Session, external_id: str) -> Article:
    """Return the article, creating it on first use (safe against a concurrent first use)."""
    article = find_article(session, external_id)
    if article is not None:
        return article
    try:
        with session.begin_nested():
            article = Article(external_id=external_id)
            session.add(article)
    except IntegrityError:
        article = find_article(session, external_id)
        if article is None:
            raise
    return article


def get_comment(session: Session, comment_id: int) -> Comment:
    """Return the comment or raise NotFound."""
    comment = session.get(Comment, comment_id)
    if comment is None:
        raise NotFound(f"comment {comment_id} does not exist")
    return comment


@dataclass(frozen=True)
class Idempotency:
    """A client's `Idempotency-Key` and the fingerprint of the request it came with."""

    client_id: int
    key: str
    fingerprint: str


@dataclass(frozen=True)
class StoredComment:
    """A comment as intake stored it: plain values, no ORM state (what the API answers with)."""

    id: int
    article_external_id: str
    parent_id: int | None
    author_id: str
    author_name: str
    text: str
    status: str
    toxicity: float
    category: str | None
    reasons: list[str]
    model_version: str
    created_at: datetime

    @classmethod
    def of(cls, comment: Comment) -> StoredComment:
        """Copy a loaded comment."""
        return cls(comment.id, comment.article_external_id, comment.parent_id, comment.author_id,
                   comment.author_name, comment.text, comment.status, comment.toxicity, comment.category,
                   list(comment.reasons), comment.model_version, comment.created_at)


@dataclass(frozen=True)
class Submission:
    comment: StoredComment
    replayed: bool = False


def _replay(session: Session, idempotency: Idempotency) -> StoredComment | None:
    stored = session.scalar(select(IdempotencyKey).where(IdempotencyKey.api_key_id == idempotency.client_id,
                                                         IdempotencyKey.key == idempotency.key))
    if stored is None:
        return None
    if stored.fingerprint != idempotency.fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request",
                                   fields={"Idempotency-Key": ["Already used with another body or article."]})
    return StoredComment.of(get_comment(session, stored.comment_id))


# What submit_comment needs to know about the article and the submission, in one round trip inside the
# write transaction. Built once: per request only the parameters change.
_AUTHOR, _NOW = bindparam("author_id", type_=String), bindparam("now", type_=UTCDateTime)
_CHECKS = select(
    Article.id, Article.comments_open, Article.premoderation, Article.title, Article.url,
    select(Comment.id).where(Comment.author_id == _AUTHOR, Comment.article_id == Article.id,
                             Comment.created_at >= bindparam("since"), Comment.text == bindparam("text"))
    .limit(1).scalar_subquery().label("original_id"),
    or_(exists().where(ban_in_force(_AUTHOR, _NOW)),
        exists().where(anonymised_ban_in_force(bindparam("author_key", type_=String), _NOW))).label("author_banned"),
    # NULL when there is no parent or no such comment.
    select(Comment.article_id).where(Comment.id == bindparam("parent_id")).scalar_subquery().label("parent_article"),
).where(Article.external_id == bindparam("external_id"))
_INSERT_COMMENT = insert(Comment)
_INSERT_ACTION = insert(ModerationAction)
_INSERT_IDEMPOTENCY = insert(IdempotencyKey)


def _article_and_checks(session: Session, article_id: str, new: NewComment, now: datetime,
                        duplicate_window: timedelta, author_key: str | None = None) -> Row[Any] | None:
    """Return (id, comments_open, premoderation, title, url, original_id, author_banned, parent_article),
    or None for an unknown article. A Core statement: no ORM objects are built on this path.

    `author_key` is the author's pseudonym, under which the ban of an erased author is kept."""
    return session.connection().execute(_CHECKS, {
        "external_id": article_id, "author_id": new.author_id, "text": new.text, "now": now,
        "since": now - duplicate_window, "parent_id": new.parent_id, "author_key": author_key,
    }).one_or_none()


def _checks_and_routing(session: Session, score: Score, thresholds: Thresholds, article_id: str,
                        new: NewComment, now: datetime, duplicate_window: timedelta,
                        terms: dict[str, list[str]], author_key: str | None) -> tuple[Row[Any], Routing]:
    """Check the submission against its article and author; return the checks and the route."""
    checks = _article_and_checks(session, article_id, new, now, duplicate_window, author_key)
    if checks is None:  # the article's first comment
        get_or_create_article(session, article_id)
        checks = _article_and_checks(session, article_id, new, now, duplicate_window, author_key)
    if not checks.comments_open:
        raise ArticleClosed(f"comments on article {article_id!r} are closed")
    if new.parent_id is not None and checks.parent_article != checks.id:
        raise InvalidInput(
            "parent_id must name a comment of the same article",
            fields={"parent_id": [f"No comment {new.parent_id} under article {article_id!r}."]},
        )
    if checks.original_id is not None:
        raise DuplicateComment(checks.original_id)
    rules = Rules(
        author_banned=bool(checks.author_banned),
        banned_terms=tuple(terms.get(BANNED, ())),
        suspect_terms=tuple(terms.get(SUSPECT, ())),
        premoderation=checks.premoderation,
    )
    return checks, route(score.toxicity, thresholds, rules, draw=audit_draw(), threat=score.threat_likely)


def submit_comment(
    session: Session, model: LoadedModel, thresholds: Thresholds, article_id: str, new: NewComment, *,
    idempotency: Idempotency | None = None, duplicate_window: timedelta = timedelta(minutes=5),
    article_info: ArticleInfo | None = None,
) -> Submission:
    """Score, route and store one comment with its audit row; commit and return it.

    A retry with the same `idempotency` key returns the comment the first request created; the same
    text from the same author under the same article within `duplicate_window` is refused. A title or
    link in `article_info` replaces the article's.
    """
    score = model.score(new.text, explain=False)
    # Before the write transaction, like scoring: on SQLite every other writer waits while it is open.
    terms = load_matcher(session).find_all(new.text)
    # Once the key is known this is a hash, not a query.
    author_key = author_pseudonym(session, new.author_id)
    begin_write(session)
    try:  # on SQLite the write lock is held from here: every way out before the inserts releases it
        if idempotency is not None and (first := _replay(session, idempotency)) is not None:
            session.rollback()
            return Submission(first, replayed=True)
        now = utcnow()
        checks, routing = _checks_and_routing(session, score, thresholds, article_id, new, now,
                                              duplicate_window, terms, author_key)
    except BaseException:
        session.rollback()
        raise
    # Core INSERTs: the ORM's unit of work was the largest cost of a submission, paid while holding
    # SQLite's write lock. Every column is given, so the object handed back below is the stored row.
    values = {
        "article_id": checks.id, "parent_id": new.parent_id, "author_id": new.author_id,
        "author_name": new.author_name, "text": new.text, "status": routing.status, "toxicity": score.toxicity,
        "category": score.category, "reasons": list(routing.reasons), "model_version": model.version,
        "created_at": now, "updated_at": now, "decided_by": None, "decided_at": None, "report_count": 0,
        "reported": False, "claimed_by": None, "claimed_until": None,
        "auto_route": routing.auto, "audited": routing.audited, "audit_rate": thresholds.audit_rate,
        "threat_likely": score.threat_likely,
    }
    connection = session.connection()
    if article_info is not None:
        changed = {name: value for name, value in (("title", article_info.title), ("url", article_info.url))
                   if value is not None and value != getattr(checks, name)}
        if changed:
            connection.execute(update(Article).where(Article.id == checks.id).values(**changed))
    comment_id = connection.execute(_INSERT_COMMENT, values).inserted_primary_key[0]
    note_comments_changed(session)
    try:
        connection.execute(_INSERT_ACTION, {
            "comment_id": comment_id, "moderator": None, "from_status": None, "to_status": routing.status,
            "reasons": list(routing.reasons), "note": None, "created_at": now,
        })
        if idempotency is not None:
            connection.execute(_INSERT_IDEMPOTENCY, {
                "api_key_id": idempotency.client_id, "key": idempotency.key,
                "fingerprint": idempotency.fingerprint, "comment_id": comment_id, "created_at": now,
            })
        session.commit()
    except IntegrityError:
        # The same key, concurrently from another worker or instance: answer with its comment.
        session.rollback()
        if idempotency is not None and (first := _replay(session, idempotency)) is not None:
            return Submission(first, replayed=True)
        raise
    return Submission(StoredComment(
        comment_id, article_id, new.parent_id, new.author_id, new.author_name, new.text, routing.status,
        score.toxicity, score.category, list(routing.reasons), model.version, now))


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"c1:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, last_id = raw.split(":")
        # Only what _encode_cursor writes: an id the database can hold (a larger one overflows the driver).
        if version != "c1" or not (last_id.isascii() and last_id.isdigit() and 0 < int(last_id) <= MAX_ID):
            raise ValueError(raw)
        return int(last_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this service handed out",
                           fields={"cursor": ["Invalid cursor."]}) from None


def list_published(
    session: Session, article_id: str, *, limit: int, cursor: str | None, oldest_first: bool
) -> Page:
    """Return a page of an article's approved comments, newest first unless `oldest_first`."""
    after = _decode_cursor(cursor) if cursor else None
    article = find_article(session, article_id)
    if article is None:
        return Page([], None, 0)
    query = select(Comment).where(Comment.article_id == article.id, Comment.status == APPROVED)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if oldest_first:
        query = query.order_by(Comment.id.asc())
        if after is not None:
            query = query.where(Comment.id > after)
    else:
        query = query.order_by(Comment.id.desc())
        if after is not None:
            query = query.where(Comment.id < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor, total)
