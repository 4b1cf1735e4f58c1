"""Readers' data rights: export and erase an author (admin)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from moderation.api.auth import ADMIN, Blueprint, current_key
from moderation.api.schemas import AuthorQuery, CommentOut, ErrorSchema, checked_author_id
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
    feedback_deleted = fields.Integer(required=True, metadata={
        "description": "Training labels integrations sent back about the author's texts."})
    ban_anonymised = fields.Boolean(required=True, metadata={
        "description": "The author was banned: the ban stays in force under a keyed hash of their id."})


def _export(author_id: str) -> dict[str, Any]:
    return privacy.export_author(db.session, author_id)


def _erase(author_id: str) -> privacy.Erasure:
    return privacy.erase_author(db.session, author_id, admin=current_key().name)


# The id in the query string reaches every id intake stores; one in the path cannot hold "/" and is
# rewritten by clients and proxies ("..", "//"). The path routes stay for plain ids.

@blp.route("/export")
class ExportById(MethodView):
    @blp.response(200, AuthorExport)
    @blp.requires(ADMIN)
    @blp.arguments(AuthorQuery, location="query")
    @blp.alt_response(404, schema=ErrorSchema, description="Nothing is stored about this author")
    def get(self, query: dict[str, str]) -> dict[str, Any]:
        """Export every comment, report and ban held about an author, named in the query (GDPR Art. 15)."""
        return _export(query["author_id"])


@blp.route("")
class EraseById(MethodView):
    @blp.response(200, ErasureOut)
    @blp.requires(ADMIN)
    @blp.arguments(AuthorQuery, location="query")
    @blp.alt_response(404, schema=ErrorSchema, description="Nothing is stored about this author")
    def delete(self, query: dict[str, str]) -> Any:
        """Erase an author named in the query everywhere, keeping only anonymised audit rows (Art. 17)."""
        return _erase(query["author_id"])


@blp.route("/<author_id>/export")
class Export(MethodView):
    @blp.response(200, AuthorExport)
    @blp.requires(ADMIN)
    @blp.alt_response(404, schema=ErrorSchema, description="Nothing is stored about this author")
    @blp.alt_response(422, schema=ErrorSchema, description="Not an author id")
    def get(self, author_id: str) -> dict[str, Any]:
        """Export every comment, report and ban held about an author (Art. 15); for ids with `/` see /export."""
        return _export(checked_author_id(author_id))


@blp.route("/<author_id>")
class Erase(MethodView):
    @blp.response(200, ErasureOut)
    @blp.requires(ADMIN)
    @blp.alt_response(404, schema=ErrorSchema, description="Nothing is stored about this author")
    @blp.alt_response(422, schema=ErrorSchema, description="Not an author id")
    def delete(self, author_id: str) -> Any:
        """Erase an author everywhere, keeping only anonymised audit rows (Art. 17); ids with `/`: ?author_id=."""
        return _erase(checked_author_id(author_id))
