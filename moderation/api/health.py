"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from moderation import limits
from moderation.api.auth import Blueprint
from moderation.api.schemas import Health
from moderation.extensions import classifier, db

blp = Blueprint("health", __name__, description="Liveness and readiness.")


@blp.route("/healthz")
class Alive(MethodView):
    @blp.response(200, Health)
    def get(self) -> dict[str, Any]:
        """Answer while the process is alive."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.response(200, Health)
    @blp.alt_response(503, schema=Health, description="Database unreachable or full, or no model loaded")
    def get(self) -> Any:
        """Answer 200 when the database answers and has room and a model is loaded; name the model version.

        `limiter` says where rate limits are counted: `ok`, or `degraded: in-memory fallback` while the
        limit storage is unreachable (still 200: an outage of a shared Redis must not take every instance
        out of the load balancer at once), or `disabled`.
        """
        holder = classifier.holder
        model = holder.serving.model
        try:
            db.session.execute(text("SELECT 1"))
            database = "full: writes are refused for lack of space" if db.storage_full() else "ok"
        except SQLAlchemyError as exc:
            db.session.rollback()
            database = f"unreachable: {type(exc).__name__}"
        body = {"status": "ready", "database": database, "model_version": model.version if model else None,
                "limiter": limits.storage_state(current_app)}
        if holder.error:
            body["model_error"] = holder.error  # the old model keeps serving
        if database != "ok" or model is None:
            body["status"] = "not_ready"
            return body, 503
        return body
