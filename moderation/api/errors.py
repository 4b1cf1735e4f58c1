"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError

from moderation.db import database_unavailable
from moderation.errors import DuplicateComment, ModerationError
from moderation.extensions import db

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_body(status: int, message: str, *, code: str | None = None, fields: dict | None = None) -> dict:
    """Build the one error shape."""
    return {"error": {"code": code or CODES.get(status, "error"), "message": message, "fields": fields or {}}}


def _fields_from_webargs(messages: Any) -> tuple[dict, str | None]:
    """Flatten webargs' {location: {field: [msgs]}} to {field: [msgs]}; return a message for list-only errors."""
    fields: dict[str, Any] = {}
    message = None
    if isinstance(messages, dict):
        for location, errors in messages.items():
            if isinstance(errors, dict):
                fields.update(errors)
            elif isinstance(errors, list):
                message = " ".join(str(e) for e in errors)
                if location not in {"json"}:
                    fields[location] = errors
    return fields, message


def _rollback() -> None:
    db.session.rollback()


def handle_http_exception(error: HTTPException) -> tuple[dict, int, dict]:
    """Render any HTTP error (abort, routing, size limit) in the one shape."""
    _rollback()
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    fields, message = _fields_from_webargs(data.get("messages") or data.get("errors"))
    code = data.get("error_code")
    if status == 400 and message and "Invalid JSON" in message:
        code, message = "malformed_json", "The request body is not valid JSON."
    if status == 422 and not message:
        message = "The request has invalid fields: " + ", ".join(sorted(fields)) + "." if fields else None
    if status == 500:
        message = "Internal error; it has been logged."
    message = data.get("message") or message or error.description or error.name
    return error_body(status, message, code=code, fields=fields), status, headers


def handle_domain_error(error: ModerationError) -> tuple[dict, int, dict]:
    """Render a service's domain error."""
    _rollback()
    headers = {}
    if isinstance(error, DuplicateComment):
        headers["Location"] = f"/v1/comments/{error.original_id}"
    return error_body(error.status, error.message, code=error.code, fields=error.fields), error.status, headers


def handle_database_error(error: DBAPIError) -> tuple[dict, int, dict]:
    """A lost, refused or (SQLite) locked database is a 503 the client may retry; anything else is a 500."""
    _rollback()
    if database_unavailable(error):
        log.error("database_unavailable", extra={"path": request.path})
        return (
            error_body(503, "The database is unavailable; retry shortly.", code="database_unavailable"),
            503,
            {"Retry-After": "5"},
        )
    log.exception("database_error", extra={"path": request.path})
    return handle_http_exception(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    """Route every error through the one shape."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ModerationError, handle_domain_error)
    app.register_error_handler(DBAPIError, handle_database_error)
