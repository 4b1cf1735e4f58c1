"""/docs: the API reference, Swagger UI on /openapi.json, served from this service alone.

Swagger UI's own files come from the `flask-swagger-ui` package (its `dist/` folder, a copy of npm's
`swagger-ui-dist`), installed through the hashed lock, so the page works without internet and loads
nothing from elsewhere. It runs under the pages' Content-Security-Policy (no inline script or style):
the initializer that Swagger UI's own index.html keeps inline is a file here, static/docs/swagger-init.js.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from flask import Blueprint, render_template, send_from_directory, url_for

from moderation.web import security

SWAGGER_UI_DIST = Path(str(files("flask_swagger_ui") / "dist"))

bp = Blueprint("api_docs", __name__, template_folder="templates", static_folder="static/docs",
               static_url_path="/docs/static")
security.add_security_headers(bp)


@bp.get("/docs")
def index() -> Any:
    """Show the API reference."""
    return render_template("web/docs.html", spec_url=url_for("api-docs.openapi_json"))


@bp.get("/docs/swagger-ui/<path:filename>")
def swagger_ui(filename: str) -> Any:
    """Serve one of Swagger UI's files (404 for anything outside its folder)."""
    return send_from_directory(SWAGGER_UI_DIST, filename)
