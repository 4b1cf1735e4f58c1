"""Kommentare moderation service: scores, routes and publishes reader comments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application from the environment (or `test_config`) and bind its extensions."""
    # Imported here so that `moderation.ml` and the CLI can be used without loading the web stack.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from moderation import api, limits, observability, web
    from moderation.config import finalize, load_config
    from moderation.extensions import classifier, db

    app = Flask(__name__, instance_relative_config=True)
    config = load_config()
    if test_config:
        config.update(test_config)
    finalize(config)
    app.config.from_mapping(config)
    if app.config["TRUSTED_PROXY_HOPS"]:
        # Only the entries our own proxies appended are trusted; anything left of them is the client's to forge.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXY_HOPS"])
    observability.configure_logging(app.config["LOG_LEVEL"])
    db.init_app(app)
    classifier.init_app(app)
    observability.init_app(app)
    api.init_app(app)
    web.init_app(app)
    limits.init_app(app)
    return app
