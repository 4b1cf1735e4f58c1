"""Domain exceptions raised by services; the web layer turns them into responses."""

from __future__ import annotations


class ModerationError(Exception):
    """Base of every domain error: a stable machine code, a message, optional per-field details."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(ModerationError):
    code, status = "not_found", 404


class Forbidden(ModerationError):
    """The caller may do this kind of thing, but not to this object (e.g. undo someone else's decision)."""

    code, status = "forbidden", 403


class InvalidInput(ModerationError):
    """Input that passed the schema but breaks a rule only the service can check."""

    code, status = "validation_failed", 422


class Conflict(ModerationError):
    code, status = "conflict", 409


class ArticleClosed(Conflict):
    code = "article_closed"


class CommentErased(Conflict):
    """The comment was erased at its author's request: its tombstone is not decided again."""

    code = "comment_erased"


class DuplicateComment(Conflict):
    """The same author posted the same text under the same article a moment ago."""

    code = "duplicate_comment"

    def __init__(self, original_id: int) -> None:
        super().__init__(f"duplicate of comment {original_id}, posted by the same author moments ago")
        self.original_id = original_id


class IdempotencyKeyReused(ModerationError):
    code, status = "idempotency_key_reused", 422


class Unavailable(ModerationError):
    code, status = "unavailable", 503
