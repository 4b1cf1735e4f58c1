"""Readers' data rights (GDPR): export everything about an author, or erase it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from moderation.db import begin_write
from moderation.models import REJECTED, AuthorBan, Comment, IdempotencyKey, ModerationAction, Report
from moderation.services.outbox import record_status_change

ERASED = "[erased]"


@dataclass(frozen=True)
class Erasure:
    comments_erased: int
    reports_deleted: int
    ban_lifted: bool


def export_author(session: Session, author_id: str) -> dict:
    """Return every comment, report and ban this service holds about an author."""
    comments = session.scalars(select(Comment).where(Comment.author_id == author_id).order_by(Comment.id)).all()
    filed = session.scalars(select(Report).where(Report.reporter_id == author_id).order_by(Report.id)).all()
    ban = session.get(AuthorBan, author_id)
    return {
        "author_id": author_id,
        "comments": comments,
        "reports": filed,
        "ban": ban,
    }


def erase_author(session: Session, author_id: str, *, admin: str) -> Erasure:
    """Erase an author's texts, names and ids everywhere; keep only anonymised audit rows.

    Their comments stay as empty, rejected tombstones so that replies and the audit trail keep their
    structure; notes that could quote them are cleared; their own reports, bans and idempotency
    records are deleted.
    """
    begin_write(session)
    comments = session.scalars(select(Comment).where(Comment.author_id == author_id)).all()
    ids = [c.id for c in comments]
    for comment in comments:
        previous = comment.status
        if previous != REJECTED:
            session.add(ModerationAction(comment_id=comment.id, moderator=admin, from_status=previous,
                                         to_status=REJECTED, reasons=["author_erased"]))
        comment.author_id = comment.author_name = ERASED
        comment.text = ""
        comment.status, comment.reasons, comment.category = REJECTED, ["author_erased"], None
        comment.claimed_by = comment.claimed_until = None
        record_status_change(session, comment, previous, by_person=True, reasons=["author_erased"])
    if ids:
        session.execute(update(ModerationAction).where(ModerationAction.comment_id.in_(ids)).values(note=None))
        session.execute(update(Report).where(Report.comment_id.in_(ids)).values(note=None))
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.comment_id.in_(ids)))
    reports = session.execute(delete(Report).where(Report.reporter_id == author_id)).rowcount
    ban = session.execute(delete(AuthorBan).where(AuthorBan.author_id == author_id)).rowcount
    session.commit()
    return Erasure(len(ids), reports or 0, bool(ban))
