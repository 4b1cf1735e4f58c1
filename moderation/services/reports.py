"""Reader reports: enough distinct reports pull a published comment into the `reported` queue.

A comment the system published is taken down while it waits there. One a moderator approved stays
published; only reports filed since that approval count towards the threshold, so a moderator sees it
again when new readers object, not for the reports they already weighed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import begin_write
from moderation.errors import Conflict
from moderation.models import APPROVED, PENDING, Comment, ModerationAction, Report
from moderation.services.comments import get_comment
from moderation.services.outbox import record_status_change


@dataclass(frozen=True)
class ReportResult:
    report: Report
    comment: Comment
    duplicate: bool


def _reports_since_approval(session: Session, comment: Comment) -> int:
    """Count the reports a moderator has not yet weighed: all of them, or those filed after their approval."""
    query = select(func.count()).where(Report.comment_id == comment.id)
    if comment.decided_by is not None and comment.decided_at is not None:
        query = query.where(Report.created_at > comment.decided_at)
    return session.scalar(query) or 0


def report_comment(
    session: Session, comment_id: int, *, reporter_id: str, reason: str, note: str | None, threshold: int
) -> ReportResult:
    """Record a reader's report (once per reader) and pull the comment at `threshold` distinct reports.

    A comment a moderator approved after reading it stays published and joins the `reported` queue at
    `threshold` reports filed since that approval.
    """
    begin_write(session)
    comment = get_comment(session, comment_id)
    existing = session.scalar(select(Report).where(Report.comment_id == comment_id, Report.reporter_id == reporter_id))
    if existing is not None:
        return ReportResult(existing, comment, duplicate=True)
    if comment.status != APPROVED and not comment.reported:
        raise Conflict(f"comment {comment_id} is not published ({comment.status}); only published comments "
                       "can be reported")
    report = Report(comment_id=comment_id, reporter_id=reporter_id, reason=reason, note=note)
    try:
        with session.begin_nested():
            session.add(report)
    except IntegrityError:  # the same reader, concurrently
        existing = session.scalar(select(Report).where(Report.comment_id == comment_id,
                                                       Report.reporter_id == reporter_id))
        return ReportResult(existing, comment, duplicate=True)
    comment.report_count = session.scalar(select(func.count()).where(Report.comment_id == comment_id))
    if comment.status == APPROVED and not comment.reported and _reports_since_approval(session, comment) >= threshold:
        comment.reported = True
        # Taken down unless a moderator approved it: their decision keeps it published while it waits.
        target = APPROVED if comment.decided_by is not None else PENDING
        comment.status = target
        session.add(ModerationAction(comment_id=comment.id, moderator=None, from_status=APPROVED,
                                     to_status=target, reasons=["reported"]))
        record_status_change(session, comment, APPROVED, by_person=False, reasons=["reported"])
    session.commit()
    return ReportResult(report, comment, duplicate=False)
