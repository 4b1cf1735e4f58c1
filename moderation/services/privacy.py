"""Readers' data rights (GDPR): export everything about an author, or erase it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from moderation.db import begin_write, compact_after_erasure
from moderation.errors import NotFound
from moderation.models import ERASED, REJECTED, AuthorBan, Comment, IdempotencyKey, ModerationAction, Report
from moderation.services.authors import anonymise_ban, anonymised_ban
from moderation.services.feedback import delete_feedback_about
from moderation.services.outbox import record_status_change


@dataclass(frozen=True)
class Erasure:
    comments_erased: int
    reports_deleted: int
    feedback_deleted: int
    ban_anonymised: bool


@dataclass(frozen=True)
class ErasedBan:
    """What is left of an erased author's ban: its end, not its reason or who banned them."""

    until: datetime | None
    created_at: datetime
    reason: str = ERASED


def export_author(session: Session, author_id: str) -> dict:
    """Return every comment, report and ban this service holds about an author; NotFound if there is none."""
    comments = session.scalars(select(Comment).where(Comment.author_id == author_id).order_by(Comment.id)).all()
    filed = session.scalars(select(Report).where(Report.reporter_id == author_id).order_by(Report.id)).all()
    ban = session.get(AuthorBan, author_id)
    if ban is None and (kept := anonymised_ban(session, author_id)) is not None:
        ban = ErasedBan(kept.until, kept.created_at)
    if not comments and not filed and ban is None:
        raise NotFound(f"nothing is stored about author {author_id!r}")
    return {
        "author_id": author_id,
        "comments": comments,
        "reports": filed,
        "ban": ban,
    }


def erase_author(session: Session, author_id: str, *, admin: str) -> Erasure:
    """Erase an author's texts, names and ids everywhere; keep only anonymised audit rows.

    Their comments stay as empty, rejected tombstones so that replies and the audit trail keep their
    structure; notes that could quote them are cleared; labels integrations sent back about their texts,
    their own reports and idempotency records are deleted; a ban is kept under a keyed hash of their id.
    On SQLite the write-ahead log is then emptied, so the old pages do not linger there.
    """
    begin_write(session)
    comments = session.scalars(select(Comment).where(Comment.author_id == author_id)).all()
    has_reports = session.scalar(select(exists().where(Report.reporter_id == author_id)))
    if not comments and not has_reports and session.get(AuthorBan, author_id) is None:
        session.rollback()
        raise NotFound(f"nothing to erase for author {author_id!r}: no comments, reports or ban under this id")
    ids = [c.id for c in comments]
    texts = [c.text for c in comments]
    for comment in comments:
        previous = comment.status
        if previous != REJECTED:
            session.add(ModerationAction(comment_id=comment.id, moderator=admin, from_status=previous,
                                         to_status=REJECTED, reasons=["author_erased"]))
        comment.author_id = comment.author_name = ERASED
        comment.text = ""
        comment.status, comment.reasons, comment.category = REJECTED, ["author_erased"], None
        comment.claimed_by = comment.claimed_until = None
        comment.reported = False
        record_status_change(session, comment, previous, by_person=True, reasons=["author_erased"])
    if ids:
        session.execute(update(ModerationAction).where(ModerationAction.comment_id.in_(ids)).values(note=None))
        session.execute(update(Report).where(Report.comment_id.in_(ids)).values(note=None))
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.comment_id.in_(ids)))
    feedback = delete_feedback_about(session, texts)
    reports = session.execute(delete(Report).where(Report.reporter_id == author_id)).rowcount
    banned = anonymise_ban(session, author_id)
    session.commit()
    compact_after_erasure(session)
    return Erasure(len(ids), reports or 0, feedback, banned)
