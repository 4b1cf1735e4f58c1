"""Server-rendered pages: the moderators' queue and dashboard under /moderation/, a demo article under /demo/."""

from __future__ import annotations

from flask import Flask

from moderation.web import demo, moderator

BLUEPRINTS = (moderator.bp, demo.bp)


def init_app(app: Flask) -> None:
    """Register the pages, their error pages and the session cookie settings on `app` (once)."""
    if moderator.bp.name in app.blueprints:
        return
    # The session cookie carries the moderator's sign-in: never readable by scripts, never sent by
    # cross-site POSTs. SESSION_COOKIE_SECURE stays as configured, so that plain-http tests work.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
