"""A short-lived per-process cache of the public listing, the busiest endpoint.

An answer is reused for at most LISTING_CACHE_SECONDS (default 1 s) and dropped at once when this
process commits a change to any comment, so readers of other workers see a new or newly approved
comment at most that much later. 0 turns the cache off.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import event
from sqlalchemy.orm import Session

from moderation.db import COMMENTS_CHANGED, note_comments_changed
from moderation.models import Comment

MAX_ENTRIES = 4096
_entries: dict[tuple, tuple[bytes, float]] = {}
_lock = threading.Lock()


def get(key: tuple) -> bytes | None:
    """Return a cached body that has not expired."""
    entry = _entries.get(key)
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def put(key: tuple, body: bytes, seconds: float) -> None:
    """Remember a body for `seconds`."""
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (body, time.monotonic() + seconds)


def clear() -> None:
    """Forget every cached listing."""
    with _lock:
        _entries.clear()


@event.listens_for(Session, "before_flush")
def _note_comment_changes(session: Session, _context, _instances) -> None:
    if any(isinstance(obj, Comment) for obj in (*session.new, *session.dirty, *session.deleted)):
        note_comments_changed(session)


@event.listens_for(Session, "after_commit")
def _drop_after_comment_changes(session: Session) -> None:
    if session.info.pop(COMMENTS_CHANGED, False):
        clear()


@event.listens_for(Session, "after_rollback")
def _forget_note(session: Session) -> None:
    session.info.pop(COMMENTS_CHANGED, None)
