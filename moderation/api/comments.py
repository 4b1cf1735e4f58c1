"""Comments: intake from the site's backend, the public Kommentare listing, lookup."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from moderation.api.auth import ADMIN, BACKEND, MODERATOR, Blueprint
from moderation.api.schemas import ARTICLE_ID, CommentIn, CommentOut, CommentPage, ErrorSchema, ListQuery
from moderation.errors import InvalidInput
from moderation.extensions import classifier, db
from moderation.services import comments as service

blp = Blueprint("comments", __name__, url_prefix="/v1", description="Submit comments and list published ones.")


def checked_article_id(article_id: str) -> str:
    """Return the article id if it is one we accept, else raise a 422."""
    if not ARTICLE_ID.match(article_id):
        raise InvalidInput(
            "article_id must be 1..200 characters of letters, digits and . _ : ~ -",
            fields={"article_id": ["Invalid article id."]},
        )
    return article_id


@blp.route("/articles/<article_id>/comments")
class ArticleComments(MethodView):
    @blp.response(200, CommentPage)
    @blp.arguments(ListQuery, location="query", as_kwargs=True)
    def get(self, article_id: str, limit: int, cursor: str | None, order: str) -> service.Page:
        """List an article's published comments, newest first.

        Public: no key needed. Only approved comments appear, without author ids or scores.
        """
        return service.list_published(
            db.session, checked_article_id(article_id), limit=limit, cursor=cursor, oldest_first=order == "oldest"
        )

    @blp.response(201, CommentOut)
    @blp.requires(BACKEND, ADMIN)
    @blp.arguments(CommentIn)
    def post(self, data: dict[str, Any], article_id: str) -> Any:
        """Submit a reader comment; it is scored and published, held or rejected at once."""
        return service.submit_comment(
            db.session, classifier.model, classifier.thresholds, checked_article_id(article_id),
            service.NewComment(**data),
        )


@blp.route("/comments/<int:comment_id>")
class CommentDetail(MethodView):
    @blp.response(200, CommentOut)
    @blp.requires(BACKEND, MODERATOR, ADMIN)
    @blp.alt_response(404, schema=ErrorSchema, description="No such comment")
    def get(self, comment_id: int) -> Any:
        """Return one comment with its status, score and reasons."""
        return service.get_comment(db.session, comment_id)
