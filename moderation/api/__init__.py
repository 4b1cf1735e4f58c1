"""The JSON API under /v1: blueprints, OpenAPI document, error shape."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_smorest import Api, abort
from werkzeug.routing import UnicodeConverter

from moderation.api import comments, coral, decisions, desk, health, perspective, policy, privacy, queue, scoring
from moderation.api.errors import register_error_handlers
from moderation.api.inputs import BoundedJSONProvider
from moderation.api.schemas import ErrorSchema
from moderation.text import ARTICLE_ID

BLUEPRINTS = (health.blp, comments.blp, scoring.blp, queue.blp, decisions.blp, policy.blp, desk.blp, privacy.blp,
              coral.blp, perspective.blp)
BODY_METHODS = {"POST", "PUT", "PATCH"}

OPENAPI_CONFIG = {
    "API_TITLE": "Kommentare moderation service",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    # /docs is a page of our own (moderation/web/docs.py): Swagger UI from the package, no CDN.
}


class ModerationApi(Api):
    """flask-smorest Api documenting every error with the one error shape."""

    ERROR_SCHEMA = ErrorSchema


class ArticleIdConverter(UnicodeConverter):
    """Routes any article id (the view answers 422 for a malformed one) and documents the accepted pattern."""


def default_headers(response: Response) -> Response:
    """Mark every answer nosniff, and no-store unless its view says it may be cached (most are not public)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def require_json_body() -> None:
    """Refuse a body that is not JSON with 415 before any view parses it."""
    if request.method in BODY_METHODS and request.path.startswith("/v1/") and not request.is_json:
        abort(415, message="Send the body as JSON with 'Content-Type: application/json'.")


def init_app(app: Flask) -> Api:
    """Register the API on `app`."""
    for key, value in OPENAPI_CONFIG.items():
        app.config.setdefault(key, value)
    api = ModerationApi(app, spec_kwargs={
        "info": {"description": "Scores, routes and publishes reader comments of German news sites."},
    })
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    app.url_map.converters["article_id"] = ArticleIdConverter
    api.register_converter(ArticleIdConverter, lambda _converter: {
        "type": "string", "pattern": ARTICLE_ID.pattern, "minLength": 1, "maxLength": 200})
    app.json = BoundedJSONProvider(app)  # request.get_json() too reads with the service's JSON limits
    app.before_request(require_json_body)
    app.after_request(default_headers)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    register_error_handlers(app)
    return api
