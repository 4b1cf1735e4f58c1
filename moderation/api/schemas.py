"""Marshmallow schemas: the single source of input validation and of the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

from moderation.errors import InvalidInput
from moderation.text import MAX_ID, clean_text

AUTHOR_ID_LENGTH = 200


class CleanText(fields.String):
    """A string cleaned by `clean_text` and limited to 1..config[`limit_key`] characters."""

    def __init__(self, *, limit_key: str | None = None, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit_key, self.limit = limit_key, limit

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = clean_text(super()._deserialize(value, attr, data, **kwargs))
        limit = current_app.config[self.limit_key] if self.limit_key else self.limit
        if not text:
            raise ValidationError("Must not be empty (after removing whitespace and control characters).")
        if len(text) > limit:
            raise ValidationError(f"Must be at most {limit} characters; got {len(text)}.")
        return text


def author_id_field(**kwargs: Any) -> CleanText:
    """Return the author id field, cleaned as intake cleans it: any other spelling would miss stored rows."""
    return CleanText(limit=AUTHOR_ID_LENGTH, required=True, **kwargs)


class AuthorQuery(Schema):
    """An author named in the query string: any id intake stores can be sent there, `/` and all."""

    author_id = author_id_field(metadata={"description": "The site's id of the reader, URL-encoded.",
                                          "example": "leser-4711"})


def checked_author_id(raw: str) -> str:
    """Return an author id taken from a URL path, cleaned like intake cleans it, or raise a 422."""
    try:
        return AuthorQuery().load({"author_id": raw})["author_id"]
    except ValidationError as error:
        raise InvalidInput("author_id is not a valid author id", fields=error.messages) from None


class TitleText(CleanText):
    """A one-line text: cleaned like any text, then every run of whitespace (line breaks too) one space."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return " ".join(super()._deserialize(value, attr, data, **kwargs).split())


def article_title_field(**kwargs: Any) -> TitleText:
    """The optional `article_title` the site's backend may send (plain text, at most 300 characters)."""
    return TitleText(limit=300, allow_none=True, metadata={
        "description": "The article's headline, shown to moderators instead of its id.",
        "example": "Stadtrat beschließt neue Radwege"}, **kwargs)


def article_url_field(**kwargs: Any) -> fields.Url:
    """The optional `article_url`: an absolute http(s) link of at most 2000 characters."""
    return fields.Url(schemes={"http", "https"}, require_tld=False, allow_none=True,
                      validate=validate.Length(max=2000), metadata={
                          "description": "Link to the article (http or https), shown to moderators.",
                          "example": "https://www.zeitung.example/lokales/radwege.html"}, **kwargs)


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"example": "validation_failed"})
    message = fields.String(required=True)
    fields_ = fields.Dict(keys=fields.String(), required=True, data_key="fields",
                          metadata={"description": "Field name to its messages."})


class ErrorSchema(Schema):
    """Every error the API returns."""

    error = fields.Nested(ErrorDetail, required=True)


class CommentIn(Schema):
    """A reader comment as the site's backend submits it."""

    author_id = author_id_field(metadata={"description": "The site's stable id of the reader.",
                                          "example": "leser-4711"})
    author_name = CleanText(limit_key="MAX_AUTHOR_NAME_LENGTH", required=True, metadata={"example": "Leserin K."})
    text = CleanText(limit_key="MAX_TEXT_LENGTH", required=True,
                     metadata={"example": "Danke für den ausgewogenen Artikel!"})
    parent_id = fields.Integer(strict=True, load_default=None, allow_none=True,
                               validate=validate.Range(min=1, max=MAX_ID),
                               metadata={"description": "Id of the comment this replies to (same article)."})
    # Absent or null: the article keeps what it has.
    article_title = article_title_field()
    article_url = article_url_field()


class CommentOut(Schema):
    """A comment with its moderation decision (backend view)."""

    id = fields.Integer(required=True)
    article_id = fields.String(required=True, attribute="article_external_id")
    parent_id = fields.Integer(allow_none=True, required=True)
    author_id = fields.String(required=True)
    author_name = fields.String(required=True)
    text = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["approved", "pending", "rejected"]))
    toxicity = fields.Float(required=True)
    category = fields.String(allow_none=True, required=True, metadata={
        "description": "insult, abuse, profanity or threat (a likely threat, whatever its toxicity); null when the "
                       "model takes the comment for harmless."})
    reasons = fields.List(fields.String(), required=True, metadata={
        "description": "Why it has its status: author_banned, banned_term, toxicity_high (rejected); threat_likely, "
                       "premoderation, suspect_term, toxicity_likely, toxicity_uncertain, audit_sample (pending). "
                       "threat_likely: the model takes it for a likely threat; it waits for a person whatever its "
                       "toxicity and comes first in the moderation queue."})
    model_version = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class PublicComment(Schema):
    """A published comment as readers see it: no author id, no scores."""

    id = fields.Integer(required=True)
    parent_id = fields.Integer(allow_none=True, required=True)
    author_name = fields.String(required=True)
    text = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class ListQuery(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))
    order = fields.String(load_default="newest", validate=validate.OneOf(["newest", "oldest"]))


class CommentPage(Schema):
    comments = fields.List(fields.Nested(PublicComment), required=True)
    next_cursor = fields.String(allow_none=True, required=True,
                                metadata={"description": "Pass as `cursor` for the next page; null on the last."})
    total = fields.Integer(required=True, metadata={"description": "Published comments of the article."})


class ScoreIn(Schema):
    text = CleanText(limit_key="MAX_TEXT_LENGTH", required=True)


class Highlight(Schema):
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    text = fields.String(required=True)
    weight = fields.Float(required=True)


class ScoreOut(Schema):
    toxicity = fields.Float(required=True)
    offensive = fields.Boolean(required=True)
    category = fields.String(allow_none=True, required=True)
    highlights = fields.List(fields.Nested(Highlight), required=True)
    model_version = fields.String(required=True)


class Health(Schema):
    status = fields.String(required=True)
    database = fields.String()
    model_version = fields.String(allow_none=True)
    model_error = fields.String(metadata={"description": "What is wrong with a promoted model or the pointer to it; "
                                                         "the loaded model keeps serving. Details are in the log."})
    limiter = fields.String(metadata={"description": "`ok`, `degraded: in-memory fallback` or `disabled`."})
    detail = fields.String()
