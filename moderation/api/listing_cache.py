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
# Counts the clears: a body built from data read before a clear must not be stored after it (another
# thread of this worker committed a change meanwhile).
_generation = 0


def get(key: tuple) -> bytes | None:
    """Return a cached body that has not expired."""
    entry = _entries.get(key)
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def generation() -> int:
    """Return the cache's generation; take it before reading the data that `put` will store."""
    return _generation


def put(key: tuple, body: bytes, seconds: float, generation: int) -> None:
    """Remember a body for `seconds`, unless the cache was cleared since `generation` was taken."""
    with _lock:
        if generation != _generation:
            return
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (body, time.monotonic() + seconds)


def clear() -> None:
    """Forget every cached listing."""
    global _generation
    with _lock:
        _generation += 1
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
