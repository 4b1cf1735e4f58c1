"""The webhook outbox: status changes recorded in the same transaction as the change itself."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.models import APPROVED, PENDING, REJECTED, Comment, WebhookEvent

EVENT_TYPES = {APPROVED: "comment.approved", REJECTED: "comment.rejected", PENDING: "comment.withheld"}


def record_status_change(session: Session, comment: Comment, old_status: str, *, by_person: bool,
                         reasons: list[str]) -> WebhookEvent | None:
    """Add an event for the news site if the comment's status changed; the caller commits."""
    if old_status == comment.status:
        return None
    now = utcnow()
    event = WebhookEvent(
        event_id=str(uuid.uuid4()),
        type=EVENT_TYPES[comment.status],
        created_at=now,
        payload={
            "comment_id": comment.id,
            "article_id": comment.article_external_id,
            "old_status": old_status,
            "new_status": comment.status,
            "decided_by": "moderator" if by_person else "system",
            "reasons": reasons,
            "changed_at": now.isoformat(),
        },
    )
    session.add(event)
    return event
