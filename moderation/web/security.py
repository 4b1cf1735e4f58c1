"""What every page shares: CSRF tokens, the moderator's sign-in, security headers and German error pages."""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, g, jsonify, render_template, request, session, url_for
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from moderation.db import database_unavailable, utcnow
from moderation.errors import (
    ArticleClosed,
    CommentErased,
    Conflict,
    DuplicateComment,
    Forbidden,
    ModerationError,
)
from moderation.extensions import db
from moderation.models import ApiKey
from moderation.services import web_sessions
from moderation.services.keys import Principal, authenticate

log = logging.getLogger(__name__)

MODERATOR_ROLES = ("moderator", "admin")
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRF-Token"
# The cookie's only sign of a sign-in: a random token the server looks up (services/web_sessions.py).
SESSION_TOKEN = "sid"
# Scripts send this header with fetch(); their errors come back as JSON with a German message.
FETCH_HEADER = "X-Requested-With"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

# status: (title, message) shown on the German error page
ERROR_TEXTS: dict[int, tuple[str, str]] = {
    400: ("Ungültige Anfrage", "Die Anfrage konnte nicht verarbeitet werden."),
    401: ("Nicht angemeldet", "Bitte melden Sie sich mit Ihrem Moderationsschlüssel an."),
    403: ("Kein Zugriff", "Dieser Schlüssel darf die Moderation nicht öffnen."),
    404: ("Seite nicht gefunden", "Diese Seite oder dieser Kommentar existiert nicht."),
    405: ("Nicht erlaubt", "Diese Aktion ist auf dieser Seite nicht möglich."),
    409: ("Konflikt", "Der Kommentar wurde inzwischen von jemand anderem entschieden oder wird gerade "
                      "von einer anderen Person bearbeitet."),
    413: ("Zu groß", "Die gesendeten Daten sind zu groß."),
    422: ("Ungültige Eingabe", "Die Eingabe ist ungültig."),
    429: ("Zu viele Anfragen", "Bitte warten Sie einen Moment und versuchen Sie es dann noch einmal."),
    500: ("Interner Fehler", "Etwas ist schiefgegangen. Der Fehler wurde protokolliert."),
    503: ("Nicht verfügbar", "Die Datenbank ist gerade nicht erreichbar. Bitte versuchen Sie es gleich noch einmal."),
}


class CsrfError(BadRequest):
    """A POST without the session's CSRF token."""

    description = ("Das Formular ist abgelaufen oder unvollständig (Sicherheitsmerkmal fehlt oder ist ungültig). "
                   "Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.")


def csrf_token() -> str:
    """Return this session's CSRF token, creating it on first use."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a POST whose form field or header does not carry this session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError()


def session_limits() -> web_sessions.SessionLimits:
    """Return the configured lifetime and idle timeout of a sign-in."""
    config = current_app.config
    return web_sessions.SessionLimits(lifetime=timedelta(hours=config["SESSION_HOURS"]),
                                      idle=timedelta(minutes=config["SESSION_IDLE_MINUTES"]))


def sign_in(key: Principal) -> None:
    """Start a fresh server-side session for `key`, with a new CSRF token (no session fixation)."""
    old = session.get(SESSION_TOKEN)
    session.clear()
    session[SESSION_TOKEN] = web_sessions.start(db.session, key.id, session_limits(), now=utcnow(),
                                                replaces=old if isinstance(old, str) else None)
    csrf_token()


def sign_out() -> None:
    """End the session on the server and forget everything of it in the cookie."""
    token = session.get(SESSION_TOKEN)
    if isinstance(token, str) and token:
        web_sessions.end(db.session, token)
    session.clear()


def resume_session() -> web_sessions.Resumed:
    """Check the cookie's session on the server: the key if it is still valid, else why it ended (and clear it)."""
    token = session.get(SESSION_TOKEN)
    if token is None:
        return web_sessions.Resumed(None)
    resumed = web_sessions.resume(db.session, token if isinstance(token, str) else "", session_limits(),
                                  now=utcnow(), roles=MODERATOR_ROLES)
    if resumed.key is None:
        log.info("web_session_ended", extra={"detail": resumed.ended})
        session.clear()
    return resumed


def signed_in_key() -> ApiKey | None:
    """Return the session's key if its server-side session is valid and the key may still moderate."""
    return resume_session().key


def key_for_token(token: str) -> Principal | None:
    """Return the active key for a pasted token, or None."""
    return authenticate(db.session, token.strip())


def current_moderator() -> ApiKey:
    """Return the signed-in moderator's key (set by the blueprint's before_request)."""
    return g.moderator


def is_fetch() -> bool:
    """Whether a script (not a form) sent this request."""
    return request.headers.get(FETCH_HEADER) == "fetch"


def error_page(status: int, message: str | None = None, title: str | None = None) -> Any:
    """Render the German error page, or JSON with the German message for a script."""
    default_title, default_message = ERROR_TEXTS.get(status, ("Fehler", "Die Anfrage ist fehlgeschlagen."))
    title, message = title or default_title, message or default_message
    if is_fetch():
        return jsonify({"title": title, "message": message}), status
    if request.blueprint == "demo":
        article_id = (request.view_args or {}).get("article_id")
        back = (url_for("demo.article", article_id=article_id) if article_id else url_for("demo.index"),
                "Zurück zum Artikel")
    else:
        back = (url_for("moderator_pages.queue"), "Zur Warteschlange")
    return render_template("web/error.html", status=status, title=title, message=message,
                           back_url=back[0], back_label=back[1]), status


def _http_error(error: HTTPException) -> Any:
    db.session.rollback()
    status = error.code or 500
    if status == 500:
        log.error("web_internal_error", extra={"path": request.path})
    # Werkzeug's own descriptions are English; only ours (CSRF) are meant for the moderator.
    message = error.description if isinstance(error, CsrfError) else None
    return error_page(status, message)


def _domain_error(error: ModerationError) -> Any:
    db.session.rollback()
    if isinstance(error, ArticleClosed):
        return error_page(409, "Die Kommentare zu diesem Artikel sind geschlossen.", "Kommentare geschlossen")
    if isinstance(error, DuplicateComment):
        return error_page(409, "Diesen Kommentar haben Sie eben schon abgeschickt.", "Doppelter Kommentar")
    if isinstance(error, CommentErased):
        return error_page(409, "Dieser Kommentar wurde auf Wunsch seines Autors gelöscht und kann weder "
                               "freigegeben noch abgelehnt werden.", "Kommentar gelöscht")
    if isinstance(error, Conflict):
        log.info("web_conflict", extra={"detail": error.message})
        return error_page(409)
    if isinstance(error, Forbidden):
        return error_page(403, "Nur wer entschieden hat, oder ein Admin, kann diese Entscheidung zurücknehmen.")
    return error_page(error.status)


def _database_error(error: DBAPIError) -> Any:
    db.session.rollback()
    if database_unavailable(error):
        log.error("database_unavailable", extra={"path": request.path})
        return error_page(503)
    log.exception("database_error", extra={"path": request.path})
    return error_page(InternalServerError.code)


def _headers(response: Any) -> Any:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def add_security_headers(blueprint: Blueprint) -> None:
    """Send the pages' Content-Security-Policy and the other security headers with every response of `blueprint`."""
    blueprint.after_request(_headers)


def protect(blueprint: Blueprint) -> None:
    """Give a page blueprint CSRF checks, security headers, the CSRF token in templates and HTML errors.

    Blueprint error handlers take precedence over the API's app-wide JSON handlers for this blueprint's views.
    """
    blueprint.before_request(check_csrf)
    add_security_headers(blueprint)
    blueprint.context_processor(lambda: {"csrf_token": csrf_token, "csrf_field": CSRF_FIELD})
    blueprint.register_error_handler(HTTPException, _http_error)
    blueprint.register_error_handler(ModerationError, _domain_error)
    blueprint.register_error_handler(DBAPIError, _database_error)
