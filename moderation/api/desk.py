"""The desk's tools: bans, word lists, article settings; and readers' reports from the site's backend."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from moderation.api.auth import ADMIN, BACKEND, MODERATOR, Blueprint, current_key
from moderation.api.comments import checked_article_id
from moderation.api.schemas import (
    AuthorQuery,
    CleanText,
    ErrorSchema,
    article_title_field,
    article_url_field,
    checked_author_id,
)
from moderation.extensions import db
from moderation.models import REPORT_REASONS
from moderation.services import articles, authors, reports, wordlists

blp = Blueprint("desk", __name__, url_prefix="/v1", description="Bans, word lists, article settings, reports.")


class BanIn(Schema):
    reason = CleanText(limit=500, required=True, metadata={"example": "Wiederholte Beleidigungen"})
    until = fields.AwareDateTime(load_default=None, allow_none=True,
                                 metadata={"description": "ISO 8601 with offset; null or absent: for good."})


class BanOut(Schema):
    author_id = fields.String(required=True)
    reason = fields.String(required=True)
    until = fields.AwareDateTime(allow_none=True, required=True)
    banned_by = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class WordLists(Schema):
    banned = fields.List(fields.String(validate=validate.Length(max=200)), required=True,
                         metadata={"description": "Terms that reject a comment (`banned_term`). `*` is a wildcard."})
    suspect = fields.List(fields.String(validate=validate.Length(max=200)), required=True,
                          metadata={"description": "Terms that hold a comment for review (`suspect_term`)."})


class ArticleSettings(Schema):
    article_id = fields.String(dump_only=True, attribute="external_id")
    comments_open = fields.Boolean(required=True)
    premoderation = fields.Boolean(required=True)
    # Absent: kept as they are; null: cleared.
    article_title = article_title_field(attribute="title")
    article_url = article_url_field(attribute="url")


class ReportIn(Schema):
    reporter_id = CleanText(limit=200, required=True, metadata={"example": "leser-99"})
    reason = fields.String(required=True, validate=validate.OneOf(REPORT_REASONS))
    note = CleanText(limit=1000, load_default=None, allow_none=True)


class ReportOut(Schema):
    comment_id = fields.Integer(required=True)
    reporter_id = fields.String(required=True)
    reason = fields.String(required=True)
    duplicate = fields.Boolean(required=True, metadata={"description": "This reader had reported it before."})
    report_count = fields.Integer(required=True)
    comment_status = fields.String(required=True)


@blp.route("/moderation/authors/ban")
class BanById(MethodView):
    @blp.response(200, BanOut)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(AuthorQuery, location="query")
    @blp.arguments(BanIn())
    def put(self, query: dict[str, str], data: dict[str, Any]) -> Any:
        """Ban an author named in the query (any id, `/` and all): their new comments are rejected."""
        return authors.ban_author(db.session, query["author_id"], moderator=current_key().name, **data)

    @blp.response(204)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(AuthorQuery, location="query")
    @blp.alt_response(404, schema=ErrorSchema, description="The author is not banned")
    def delete(self, query: dict[str, str]) -> None:
        """Lift the ban of an author named in the query, also one kept after their erasure."""
        authors.lift_ban(db.session, query["author_id"])


@blp.route("/moderation/authors/<author_id>/ban")
class Ban(MethodView):
    @blp.response(200, BanOut)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(BanIn())
    def put(self, data: dict[str, Any], author_id: str) -> Any:
        """Ban an author: their new comments are rejected with `author_banned` (ids with `/`: ?author_id=)."""
        return authors.ban_author(db.session, checked_author_id(author_id), moderator=current_key().name, **data)

    @blp.response(204)
    @blp.requires(MODERATOR, ADMIN)
    @blp.alt_response(404, schema=ErrorSchema, description="The author is not banned")
    @blp.alt_response(422, schema=ErrorSchema, description="Not an author id")
    def delete(self, author_id: str) -> None:
        """Lift an author's ban, also one kept after their erasure."""
        authors.lift_ban(db.session, checked_author_id(author_id))


@blp.route("/moderation/wordlists")
class WordListsView(MethodView):
    @blp.response(200, WordLists)
    @blp.requires(MODERATOR, ADMIN)
    def get(self) -> dict[str, list[str]]:
        """Return the banned and suspect terms."""
        return wordlists.get_wordlists(db.session)

    @blp.response(200, WordLists)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(WordLists())
    def put(self, data: dict[str, list[str]]) -> dict[str, list[str]]:
        """Replace both lists; matching ignores case, folds umlauts and sees through the usual evasions."""
        result = wordlists.replace_wordlists(db.session, data["banned"], data["suspect"])
        db.session.commit()
        return result


@blp.route("/articles/<article_id:article_id>/settings")
class Settings(MethodView):
    @blp.response(200, ArticleSettings)
    @blp.requires(MODERATOR, ADMIN)
    def get(self, article_id: str) -> Any:
        """Return whether an article takes comments and whether they are pre-moderated."""
        return articles.get_settings(db.session, checked_article_id(article_id))

    @blp.response(200, ArticleSettings)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(ArticleSettings())
    def put(self, data: dict[str, Any], article_id: str) -> Any:
        """Close or open an article's comments, switch pre-moderation (every comment to the queue).

        `article_title` and `article_url` are optional: absent keeps the stored ones, null clears them.
        """
        return articles.update_settings(db.session, checked_article_id(article_id), **data)


@blp.route("/comments/<int(max=2147483647):comment_id>/reports")
class Reports(MethodView):
    @blp.response(201, ReportOut)
    @blp.requires(BACKEND, ADMIN)
    @blp.arguments(ReportIn())
    @blp.alt_response(404, schema=ErrorSchema, description="No such comment")
    @blp.alt_response(409, schema=ErrorSchema, description="The comment is not published")
    def post(self, data: dict[str, Any], comment_id: int) -> dict[str, Any]:
        """Record a reader's report; enough distinct reports take the comment down into the `reported` queue."""
        result = reports.report_comment(db.session, comment_id, threshold=current_app.config["REPORT_THRESHOLD"],
                                        **data)
        return {"comment_id": comment_id, "reporter_id": result.report.reporter_id, "reason": result.report.reason,
                "duplicate": result.duplicate, "report_count": result.comment.report_count,
                "comment_status": result.comment.status}
