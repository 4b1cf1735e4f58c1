"""Coral's external moderation phase: Coral asks us about each new comment before it publishes it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from moderation.api.auth import Blueprint
from moderation.api.inputs import unstorable_fields
from moderation.api.schemas import ErrorSchema, author_id_field
from moderation.errors import ArticleClosed, DuplicateComment
from moderation.extensions import classifier, db
from moderation.metrics import COMMENTS
from moderation.models import PENDING, REJECTED
from moderation.services import comments as service
from moderation.text import ARTICLE_ID, html_to_text

blp = Blueprint("coral", __name__, url_prefix="/v1/integrations/coral",
                description="Coral's external moderation phase (signed with X-Coral-Signature).")
STAFF_ROLES = {"ADMIN", "MODERATOR", "STAFF"}
# Our reason codes in Coral's vocabulary (GQLCOMMENT_FLAG_REASON).
CORAL_REASONS = {"banned_term": "COMMENT_DETECTED_BANNED_WORD", "suspect_term": "COMMENT_DETECTED_SUSPECT_WORD"}


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE  # Coral adds fields over time; we read what we need


class CoralComment(_Lenient):
    body = fields.String(required=True)
    parentID = fields.String(allow_none=True, load_default=None)  # noqa: N815 (Coral's field name)


class CoralAuthor(_Lenient):
    id = author_id_field()  # cleaned like our API's author ids, so erasure and bans reach them
    role = fields.String(required=True)


class CoralStory(_Lenient):
    id = fields.String(required=True, validate=validate.Regexp(ARTICLE_ID))
    url = fields.String(load_default=None)


class CoralSite(_Lenient):
    id = fields.String(load_default=None)


class CoralRequest(_Lenient):
    """Coral's External Moderation Request."""

    action = fields.String(required=True, validate=validate.OneOf(["NEW", "EDIT"]))
    comment = fields.Nested(CoralComment, required=True)
    author = fields.Nested(CoralAuthor, required=True)
    story = fields.Nested(CoralStory, required=True)
    site = fields.Nested(CoralSite, load_default=None)
    tenantID = fields.String(load_default=None)  # noqa: N815
    tenantDomain = fields.String(load_default=None)  # noqa: N815


class CoralAction(Schema):
    actionType = fields.String(required=True)  # noqa: N815
    reason = fields.String(required=True)


class CoralResponse(Schema):
    """Coral's External Moderation Response (204 instead when Coral should simply continue)."""

    status = fields.String(required=True, validate=validate.OneOf(["REJECTED", "SYSTEM_WITHHELD"]))
    actions = fields.List(fields.Nested(CoralAction))


def verify_signature() -> None:
    """Abort 401 unless X-Coral-Signature carries an HMAC-SHA256 of the raw body under a configured secret."""
    secrets = [s.strip() for s in current_app.config["CORAL_SIGNING_SECRETS"].split(",") if s.strip()]
    if not secrets:
        abort(401, message="Coral integration is not configured (MODERATION_CORAL_SIGNING_SECRETS).")
    body = request.get_data(cache=True)
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets]
    offered = [part.strip().removeprefix("sha256=") for part in request.headers.get("X-Coral-Signature", "").split(",")
               if part.strip().startswith("sha256=")]
    # Compare every pair, so timing says nothing about which secret or which part matched.
    matched = False
    for candidate in offered:
        for good in expected:
            matched |= hmac.compare_digest(candidate.encode(), good.encode())
    if not matched:
        abort(401, message="X-Coral-Signature does not match any configured signing secret.")


def _answer(status: str, reasons: list[str]) -> Any:
    if status == REJECTED:
        return {"status": "REJECTED"}
    if status == PENDING:
        flags = {CORAL_REASONS.get(r, "COMMENT_DETECTED_TOXIC") for r in reasons if r != "premoderation"}
        return {"status": "SYSTEM_WITHHELD",
                "actions": [{"actionType": "FLAG", "reason": r} for r in sorted(flags or {"COMMENT_DETECTED_TOXIC"})]}
    return Response(status=204)


@blp.route("/moderation")
class CoralModeration(MethodView):
    @blp.response(200, CoralResponse)
    @blp.alt_response(204, description="Let Coral continue (publish or its own next phase)")
    @blp.alt_response(401, schema=ErrorSchema, description="Missing or wrong X-Coral-Signature")
    @blp.alt_response(400, schema=ErrorSchema, description="Malformed request")
    @blp.doc(security=[], parameters=[{"in": "header", "name": "X-Coral-Signature", "required": True,
                                       "schema": {"type": "string"}, "description": "sha256=<hex>[,sha256=<hex>]"}])
    def post(self) -> Any:
        """Judge a new or edited Coral comment: reject, withhold for review, or let Coral continue (204)."""
        verify_signature()
        payload = request.get_json(silent=True)
        try:
            if not isinstance(payload, dict):
                raise ValidationError({"_schema": ["Not an object."]})
            schema = CoralRequest()
            data = schema.load(payload)
            if problems := unstorable_fields(data, schema):
                raise ValidationError(problems)
        except ValidationError as exc:
            abort(400, message="Not a Coral External Moderation Request.", errors={"json": exc.messages})
        if data["author"]["role"].upper() in STAFF_ROLES:
            return Response(status=204)
        text = html_to_text(data["comment"]["body"])[: current_app.config["MAX_TEXT_LENGTH"]]
        if not text:
            return Response(status=204)
        new = service.NewComment(author_id=data["author"]["id"], author_name=data["author"]["id"], text=text)
        try:
            comment = service.submit_comment(db.session, *classifier.pair(db.session),
                                             data["story"]["id"], new).comment
        except ArticleClosed:
            return {"status": "REJECTED"}
        except DuplicateComment as duplicate:
            db.session.rollback()
            comment = service.get_comment(db.session, duplicate.original_id)
        else:
            COMMENTS.labels(comment.status).inc()
        return _answer(comment.status, comment.reasons)
