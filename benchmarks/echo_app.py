"""A bare Flask app that echoes JSON: the ceiling that benchmarks/load.py compares the service with.

Served by the service's own gunicorn.conf.py (`gunicorn -c gunicorn.conf.py benchmarks.echo_app:app`),
so workers, preloading and timeouts are the same; every path and method answers 200 with the request's
JSON body (or its query arguments) and echoes X-Request-ID as the service does.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request


class _NoEngine:
    """gunicorn.conf.py's post_fork disposes the service's database engine; the echo app has none."""

    def dispose(self, close: bool = True) -> None:
        """Do nothing: there are no connections to drop."""


def create_app() -> Flask:
    """Build the echo app."""
    app = Flask(__name__)
    app.extensions["moderation.db"] = (_NoEngine(), None)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def echo(path: str) -> Response:
        """Answer with the JSON body, or the query arguments when there is none."""
        body: Any = request.get_json(silent=True)
        response = jsonify(body if body is not None else request.args.to_dict())
        response.headers["X-Request-ID"] = request.headers.get("X-Request-ID", "")
        return response

    return app


app = create_app()
