"""The moderators' queue, their decisions, the audit trail and the dashboard figures."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from moderation.api.auth import ADMIN, MODERATOR, Blueprint, current_key
from moderation.api.schemas import CommentOut, ErrorSchema, Highlight
from moderation.extensions import classifier, db
from moderation.services import audit
from moderation.services import policy as policy_service
from moderation.services import queue as queue_service
from moderation.text import ARTICLE_ID, MAX_ID

blp = Blueprint("moderation", __name__, url_prefix="/v1/moderation",
                description="The moderators' queue, decisions, audit trail and figures.")


class AuthorHistorySchema(Schema):
    approved = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    banned = fields.Boolean(required=True)
    ban_until = fields.AwareDateTime(allow_none=True, required=True)


class QueueItemSchema(CommentOut):
    """A queued comment with what a moderator needs to decide it."""

    article_id = fields.String(required=True)
    highlights = fields.List(fields.Nested(Highlight), required=True,
                             metadata={"description": "Spans of the text that pushed the score up."})
    report_count = fields.Integer(required=True)
    report_reasons = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    author_history = fields.Nested(AuthorHistorySchema, required=True)
    claimed_by = fields.String(allow_none=True, required=True)
    claimed_until = fields.AwareDateTime(allow_none=True, required=True)
    decided_by = fields.String(allow_none=True, required=True)
    article_title = fields.String(allow_none=True, required=True)
    article_url = fields.String(allow_none=True, required=True)


class QueueQuery(Schema):
    queue = fields.String(load_default="pending", validate=validate.OneOf(queue_service.QUEUES))
    article_id = fields.String(load_default=None, validate=validate.Regexp(ARTICLE_ID))
    sort = fields.String(load_default="toxicity", validate=validate.OneOf(queue_service.SORTS))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=300))


class QueuePageSchema(Schema):
    comments = fields.List(fields.Nested(QueueItemSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    total = fields.Integer(required=True)


class ClaimIn(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=50))
    queue = fields.String(load_default="pending", validate=validate.OneOf(queue_service.QUEUES))
    article_id = fields.String(load_default=None, validate=validate.Regexp(ARTICLE_ID))


class ClaimOut(Schema):
    comments = fields.List(fields.Nested(QueueItemSchema), required=True)


class DecisionIn(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(list(queue_service.DECISIONS)))
    reason = fields.String(load_default=None, validate=validate.Length(max=500))
    force = fields.Boolean(load_default=False)


class ActionSchema(Schema):
    id = fields.Integer(required=True)
    comment_id = fields.Integer(required=True)
    moderator = fields.String(allow_none=True, required=True,
                              metadata={"description": "null when the system decided"})
    from_status = fields.String(allow_none=True, required=True)
    to_status = fields.String(required=True)
    reasons = fields.List(fields.String(), required=True)
    note = fields.String(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)
    reverses_action_id = fields.Integer(allow_none=True, required=True,
                                        metadata={"description": "Set on a reversal (undo): the action it takes back."})


class DecisionOut(CommentOut):
    """The decided comment, its audit row (what an undo names) and the queue sizes after it."""

    action_id = fields.Integer(required=True, metadata={
        "description": "The decision's audit row; POST /v1/moderation/actions/{id}/reversal undoes it."})
    queues = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class AuditQuery(Schema):
    comment_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ID))
    moderator = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    since = fields.AwareDateTime(load_default=None, default_timezone=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    before_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ID))


class AuditPage(Schema):
    actions = fields.List(fields.Nested(ActionSchema), required=True)


COMMENT_FIELDS = ("id", "parent_id", "author_id", "author_name", "text", "status", "toxicity", "category", "reasons",
                  "model_version", "created_at")


def serialize_items(items: list[queue_service.QueueItem]) -> list[dict[str, Any]]:
    """Turn queue items into the queue schema's shape, with fresh highlights from the serving model."""
    model, thresholds = classifier.pair(db.session)
    out = []
    for item in items:
        comment = item.comment
        out.append({
            **{name: getattr(comment, name) for name in COMMENT_FIELDS},
            "article_id": comment.article_external_id,
            "article_title": comment.article.title,
            "article_url": comment.article.url,
            # Only the words that carried a held comment over the approve threshold in force.
            "highlights": model.score(comment.text, above=thresholds.approve).highlights,
            "report_count": comment.report_count,
            "report_reasons": item.report_reasons,
            "author_history": item.history,
            "claimed_by": comment.claimed_by,
            "claimed_until": comment.claimed_until,
            "decided_by": comment.decided_by,
        })
    return out


@blp.route("/queue")
class Queue(MethodView):
    @blp.response(200, QueuePageSchema)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(QueueQuery(), location="query", as_kwargs=True)
    def get(self, **query: Any) -> dict[str, Any]:
        """List comments waiting for a decision, riskiest first, with highlights, reports and author history."""
        page = queue_service.list_queue(db.session, **query)
        return {"comments": serialize_items(page.items), "next_cursor": page.next_cursor, "total": page.total}


@blp.route("/queue/claim")
class Claim(MethodView):
    @blp.response(200, ClaimOut)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(ClaimIn())
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Claim the next unclaimed comments for a few minutes, so no two moderators review the same one."""
        items = queue_service.claim(db.session, current_key().name, minutes=current_app.config["CLAIM_MINUTES"], **data)
        return {"comments": serialize_items(items)}


@blp.route("/comments/<int(max=2147483647):comment_id>/decision")
class Decision(MethodView):
    @blp.response(200, DecisionOut)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(DecisionIn())
    @blp.alt_response(404, schema=ErrorSchema, description="No such comment")
    @blp.alt_response(409, schema=ErrorSchema, description="Decided or claimed by someone else")
    def post(self, data: dict[str, Any], comment_id: int) -> Any:
        """Approve or reject a comment (also take down a published one or restore a rejected one)."""
        comment, action = queue_service.decide_with_action(db.session, comment_id, current_key().name, **data)
        return {**{name: getattr(comment, name) for name in COMMENT_FIELDS},
                "article_external_id": comment.article_external_id, "action_id": action.id,
                "queues": audit.queue_sizes(db.session)}


@blp.route("/audit")
class Audit(MethodView):
    @blp.response(200, AuditPage)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(AuditQuery(), location="query", as_kwargs=True)
    def get(self, **query: Any) -> dict[str, Any]:
        """Return the audit trail, newest first: every status change, by whom (null: the system) and why."""
        return {"actions": audit.audit_trail(db.session, **query)}


class DaySchema(Schema):
    day = fields.String(required=True)
    approved_auto = fields.Integer(required=True)
    rejected_auto = fields.Integer(required=True)
    approved_moderator = fields.Integer(required=True)
    rejected_moderator = fields.Integer(required=True)
    pending = fields.Integer(required=True)


class VersionAgreement(Schema):
    model_version = fields.String(required=True)
    human_decisions = fields.Integer(required=True)
    agreed = fields.Integer(required=True)
    agreement = fields.Float(required=True)
    overruled_automatic = fields.Integer(required=True)


class Estimate(Schema):
    """A share of the moderators' decisions on the audit sample, with its 95 % Clopper–Pearson interval."""

    decided = fields.Integer(required=True, metadata={"description": "Audited comments a moderator decided."})
    removed = fields.Integer(required=True, metadata={"description": "Of those, rejected by the moderator."})
    share = fields.Float(allow_none=True, required=True)
    low = fields.Float(allow_none=True, required=True)
    high = fields.Float(allow_none=True, required=True)


class AuditRow(Schema):
    sampled = fields.Integer(required=True)
    pending = fields.Integer(required=True, metadata={"description": "Audited comments still waiting."})
    leak = fields.Nested(Estimate, required=True, metadata={
        "description": "Would-publish comments of the sample: the share moderators rejected is the measured leak."})
    reject_precision = fields.Nested(Estimate, required=True, metadata={
        "description": "Would-reject comments of the sample: the share moderators rejected is the precision."})


class VersionAudit(AuditRow):
    model_version = fields.String(required=True)


class WeekAudit(AuditRow):
    week = fields.String(required=True, metadata={"example": "2026-W49"})


class AuditBudget(Schema):
    max_leak = fields.Float(required=True)
    min_reject_precision = fields.Float(required=True)
    audit_rate = fields.Float(required=True)


class AuditSchema(Schema):
    """The automatic routing measured on the random audit sample (reason `audit_sample`), beside the budget."""

    budget = fields.Nested(AuditBudget, required=True)
    overall = fields.Nested(AuditRow, required=True)
    by_model_version = fields.List(fields.Nested(VersionAudit), required=True)
    by_week = fields.List(fields.Nested(WeekAudit), required=True, metadata={"description": "ISO weeks of arrival."})


class StatsSchema(Schema):
    total = fields.Integer(required=True)
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    queues = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    decided_without_person = fields.Integer(required=True)
    automation_rate = fields.Float(allow_none=True, required=True)
    human_decisions = fields.Integer(required=True)
    overruled = fields.Integer(required=True)
    overrule_rate = fields.Float(allow_none=True, required=True)
    by_model_version = fields.List(fields.Nested(VersionAgreement), required=True)
    daily = fields.List(fields.Nested(DaySchema), required=True)
    audit = fields.Nested(AuditSchema, required=True)


@blp.route("/stats")
class Stats(MethodView):
    @blp.response(200, StatsSchema)
    @blp.requires(MODERATOR, ADMIN)
    def get(self) -> dict[str, Any]:
        """Counts by status and queue, the share decided without a person, how often moderators overruled the model,
        and the leak and reject precision measured on the audit sample beside the budget."""
        policy = policy_service.current_policy(db.session, current_app.config).policy
        return audit.stats(db.session, decision_threshold=classifier.model.decision_threshold, policy=policy)
