"""Comments: intake from the site's backend, the public Kommentare listing, lookup."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView

from moderation.api import listing_cache
from moderation.api.auth import ADMIN, BACKEND, MODERATOR, Blueprint, current_key
from moderation.api.schemas import CommentIn, CommentOut, CommentPage, ErrorSchema, ListQuery
from moderation.errors import InvalidInput
from moderation.extensions import classifier, db
from moderation.metrics import COMMENTS
from moderation.services import comments as service
from moderation.text import ARTICLE_ID

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
blp = Blueprint("comments", __name__, url_prefix="/v1", description="Submit comments and list published ones.")


def checked_article_id(article_id: str) -> str:
    """Return the article id if it is one we accept, else raise a 422."""
    if not ARTICLE_ID.match(article_id):
        raise InvalidInput(
            "article_id must be 1..200 characters of letters, digits and . _ : ~ -",
            fields={"article_id": ["Invalid article id."]},
        )
    return article_id


def listing_cache_control(seconds: float) -> str:
    """Let shared caches keep the public listing as long as each worker may (every other answer is no-store)."""
    return f"public, max-age={int(seconds)}" if int(seconds) > 0 else "no-cache"


def idempotency(article_id: str, data: dict[str, Any]) -> service.Idempotency | None:
    """Return the request's Idempotency-Key with a fingerprint of what it asks for, if it sent one."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise InvalidInput("Idempotency-Key must be 1..200 visible ASCII characters",
                           fields={"Idempotency-Key": ["Invalid header value."]})
    canonical = json.dumps([article_id, data], sort_keys=True, ensure_ascii=False)
    fingerprint = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return service.Idempotency(current_key().id, key, fingerprint)


@blp.route("/articles/<article_id:article_id>/comments")
class ArticleComments(MethodView):
    @blp.response(200, CommentPage)
    @blp.arguments(ListQuery(), location="query", as_kwargs=True)
    def get(self, article_id: str, limit: int, cursor: str | None, order: str) -> service.Page:
        """List an article's published comments, newest first.

        Public: no key needed. Only approved comments appear, without author ids or scores. Caches may keep
        an answer for MODERATION_LISTING_CACHE_SECONDS (`Cache-Control: public, max-age=...`).
        """
        article_id = checked_article_id(article_id)
        seconds = current_app.config["LISTING_CACHE_SECONDS"]
        key = (current_app.config["DATABASE_URL"], article_id, limit, cursor, order)
        body = listing_cache.get(key) if seconds > 0 else None
        if body is None:
            generation = listing_cache.generation()
            page = service.list_published(db.session, article_id, limit=limit, cursor=cursor,
                                          oldest_first=order == "oldest")
            body = json.dumps(CommentPage().dump(page), ensure_ascii=False, separators=(",", ":")).encode()
            if seconds > 0:
                listing_cache.put(key, body, seconds, generation)
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = listing_cache_control(seconds)
        return response

    @blp.response(201, CommentOut)
    @blp.requires(BACKEND, ADMIN)
    @blp.arguments(CommentIn())
    @blp.alt_response(429, schema=ErrorSchema, description="Too many submissions from this author or reader IP")
    @blp.alt_response(409, schema=ErrorSchema, description="Article closed, or a duplicate of a recent comment")
    def post(self, data: dict[str, Any], article_id: str) -> Any:
        """Submit a reader comment; it is scored and published, held or rejected at once.

        `article_title` and `article_url` are optional; when sent, they replace the article's (moderators
        see them in the queue).

        Send an `Idempotency-Key` header (1..200 visible ASCII characters) to make retries safe: a repeat
        returns the comment the first request created, with `Idempotent-Replayed: true`.
        """
        article_id = checked_article_id(article_id)
        retry_key = idempotency(article_id, data)
        info = service.ArticleInfo(data.pop("article_title", None), data.pop("article_url", None))
        submission = service.submit_comment(
            db.session, *classifier.pair(db.session), article_id, service.NewComment(**data),
            idempotency=retry_key, article_info=info,
            duplicate_window=timedelta(seconds=current_app.config["DUPLICATE_WINDOW_SECONDS"]),
        )
        if submission.replayed:
            return submission.comment, {"Idempotent-Replayed": "true"}
        COMMENTS.labels(submission.comment.status).inc()
        return submission.comment


@blp.route("/comments/<int(max=2147483647):comment_id>")
class CommentDetail(MethodView):
    @blp.response(200, CommentOut)
    @blp.requires(BACKEND, MODERATOR, ADMIN)
    @blp.alt_response(404, schema=ErrorSchema, description="No such comment")
    def get(self, comment_id: int) -> Any:
        """Return one comment with its status, score and reasons."""
        return service.get_comment(db.session, comment_id)
