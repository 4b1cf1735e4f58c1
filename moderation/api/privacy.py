"""Readers' data rights: export and erase an author (admin)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from moderation.api.auth import ADMIN, Blueprint, current_key
from moderation.api.schemas import CommentOut
from moderation.extensions import db
from moderation.services import privacy

blp = Blueprint("privacy", __name__, url_prefix="/v1/authors", description="Export or erase an author's data.")


class ReportExport(Schema):
    comment_id = fields.Integer(required=True)
    reason = fields.String(required=True)
    note = fields.String(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)


class BanExport(Schema):
    reason = fields.String(required=True)
    until = fields.AwareDateTime(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)


class AuthorExport(Schema):
    author_id = fields.String(required=True)
    comments = fields.List(fields.Nested(CommentOut), required=True)
    reports = fields.List(fields.Nested(ReportExport), required=True, metadata={"description": "Reports they filed."})
    ban = fields.Nested(BanExport, allow_none=True, required=True)


class ErasureOut(Schema):
    comments_erased = fields.Integer(required=True)
    reports_deleted = fields.Integer(required=True)
    ban_lifted = fields.Boolean(required=True)


@blp.route("/<author_id>/export")
class Export(MethodView):
    @blp.response(200, AuthorExport)
    @blp.requires(ADMIN)
    def get(self, author_id: str) -> dict[str, Any]:
        """Export every comment, report and ban held about an author (GDPR Art. 15)."""
        return privacy.export_author(db.session, author_id)


@blp.route("/<author_id>")
class Erase(MethodView):
    @blp.response(200, ErasureOut)
    @blp.requires(ADMIN)
    def delete(self, author_id: str) -> Any:
        """Erase an author's texts, names and ids everywhere, keeping only anonymised audit rows (Art. 17)."""
        return privacy.erase_author(db.session, author_id, admin=current_key().name)
