"""Server-rendered pages: the moderators' queue and dashboard under /moderation/, the API reference under /docs,
the optional demo under /demo/."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from moderation.web import demo, docs, moderator, present


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, minus the signer Flask builds for requests that send no cookie.

    The site's backend never sends one, so API requests skip that work; a page visitor's first request
    gets the same empty session Flask would have given.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the pages (the demo only with MODERATION_DEMO=1), their error pages and the cookie settings (once)."""
    if moderator.bp.name in app.blueprints:
        return
    # The session cookie carries the moderator's sign-in: never readable by scripts, never sent by
    # cross-site POSTs. SESSION_COOKIE_SECURE stays as configured, so that plain-http tests work.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # The sign-in itself is checked on the server (services/web_sessions.py); no signed cookie outlives it.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["SESSION_HOURS"])
    app.session_interface = CookieSessions()
    zone = ZoneInfo(app.config["TIMEZONE"])

    @app.template_filter("local_time")
    def local_time(when: datetime | None) -> str:
        """Show a stored (UTC) time in the newsroom's zone, the German way."""
        return present.local_time(when, zone)

    app.register_blueprint(moderator.bp)
    app.register_blueprint(docs.bp)
    # The demo writes anonymous comments: only where someone asked for it, never in production (config.py).
    if app.config["DEMO"]:
        app.register_blueprint(demo.bp)
