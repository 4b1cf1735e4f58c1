"""Labels that integrations send back (Coral's moderator decisions via SuggestCommentScore), for retraining."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import begin_write, utcnow
from moderation.errors import InvalidInput
from moderation.models import FeedbackLabel
from moderation.text import text_fingerprint

# Fingerprints per DELETE: well under every database's limit on bound parameters.
_CHUNK = 500


def _find(session: Session, source: str, external_id: str) -> FeedbackLabel | None:
    return session.scalar(
        select(FeedbackLabel).where(FeedbackLabel.source == source, FeedbackLabel.external_id == external_id)
    )


def record_feedback(
    session: Session, *, source: str, external_id: str, text: str, label: int, attribute: str,
    client_token: str | None = None,
) -> FeedbackLabel:
    """Store a moderator's decision (label 1 = offensive) on a comment; a later one for the same comment wins."""
    if label not in (0, 1):
        raise InvalidInput(f"label must be 0 or 1, not {label!r}", fields={"label": ["Must be 0 or 1."]})
    if not text or not external_id:
        raise InvalidInput("a feedback label needs a text and a comment id")
    values = {"text": text, "text_key": text_fingerprint(text), "label": label, "attribute": attribute,
              "client_token": client_token}
    begin_write(session)
    row = _find(session, source, external_id)
    if row is None:
        row = FeedbackLabel(source=source, external_id=external_id, **values)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # the same comment's decision, arriving concurrently
            row = _find(session, source, external_id)
            if row is None:  # pragma: no cover - the unique constraint named another row
                raise
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.commit()
    return row


def delete_feedback_about(session: Session, texts: Iterable[str]) -> int:
    """Delete every label whose text is one of `texts` (compared by fingerprint); the caller commits.

    Integrations send no author id: a comment's text is what links a label to its author. Another
    author's identical text loses its label too; erasure errs on the side of forgetting.
    """
    keys = sorted({text_fingerprint(text) for text in texts if text})
    deleted = 0
    for start in range(0, len(keys), _CHUNK):
        result = session.execute(delete(FeedbackLabel).where(FeedbackLabel.text_key.in_(keys[start:start + _CHUNK])))
        deleted += result.rowcount or 0
    return deleted


def feedback_labels(session: Session, since: datetime | None = None, *,
                    source: str | None = None) -> list[tuple[str, int]]:
    """Return (text, label) of every stored decision, oldest first; only those changed at or after `since`."""
    query = select(FeedbackLabel.text, FeedbackLabel.label).order_by(FeedbackLabel.id)
    if since is not None:
        query = query.where(FeedbackLabel.updated_at >= since)
    if source is not None:
        query = query.where(FeedbackLabel.source == source)
    return [(text, label) for text, label in session.execute(query)]
