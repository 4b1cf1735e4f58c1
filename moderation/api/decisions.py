"""Moderators' recent decisions, and taking one back (undo) as a reversal in the audit trail."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from moderation.api.auth import ADMIN, MODERATOR, Blueprint, current_key
from moderation.api.queue import ActionSchema
from moderation.api.schemas import CommentOut, ErrorSchema
from moderation.extensions import db
from moderation.services import audit, decisions
from moderation.text import MAX_ID

blp = Blueprint("decisions", __name__, url_prefix="/v1/moderation",
                description="Moderators' recent decisions and their reversal (undo).")


class DecisionSchema(ActionSchema):
    """A moderator's status change, with its comment and whether it can still be taken back."""

    comment = fields.Nested(CommentOut, required=True, metadata={"description": "The comment as it is now."})
    reversed_by = fields.Integer(allow_none=True, required=True,
                                 metadata={"description": "Id of the reversal that took this decision back."})
    reversible = fields.Boolean(required=True, metadata={
        "description": "A moderator's approve or reject that is still the comment's latest status change."})


class DecisionsQuery(Schema):
    moderator = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    before_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ID))


class DecisionsPage(Schema):
    decisions = fields.List(fields.Nested(DecisionSchema), required=True)
    next_before_id = fields.Integer(allow_none=True, required=True, metadata={
        "description": "Pass as `before_id` for the next page; null on the last."})


class ReversalIn(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(max=500),
                           metadata={"description": "Why; kept in the audit row's note."})


class QueueSizes(Schema):
    pending = fields.Integer(required=True)
    reported = fields.Integer(required=True)


class ReversalOut(Schema):
    action = fields.Nested(ActionSchema, required=True, metadata={"description": "The reversal's audit row."})
    comment = fields.Nested(CommentOut, required=True)
    queues = fields.Nested(QueueSizes, required=True, metadata={"description": "Queue sizes after the undo."})


def decision_entry(entry: decisions.DecisionEntry) -> dict[str, Any]:
    """Shape one decision as DecisionSchema dumps it."""
    action = entry.action
    return {**{name: getattr(action, name) for name in ActionSchema().fields}, "comment": entry.comment,
            "reversed_by": entry.reversed_by, "reversible": entry.reversible}


@blp.route("/decisions")
class Decisions(MethodView):
    @blp.response(200, DecisionsPage)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(DecisionsQuery(), location="query", as_kwargs=True)
    def get(self, **query: Any) -> dict[str, Any]:
        """List moderators' decisions and reversals, newest first: who, when, why, and whether it can be undone."""
        page = decisions.recent_decisions(db.session, **query)
        return {"decisions": [decision_entry(e) for e in page.entries], "next_before_id": page.next_before_id}


@blp.route("/actions/<int(max=2147483647):action_id>/reversal")
class ReversalView(MethodView):
    @blp.response(201, ReversalOut)
    @blp.requires(MODERATOR, ADMIN)
    @blp.arguments(ReversalIn())
    @blp.alt_response(404, schema=ErrorSchema, description="No such action")
    @blp.alt_response(409, schema=ErrorSchema, description="Decided again or reversed since, or erased")
    def post(self, data: dict[str, Any], action_id: int) -> dict[str, Any]:
        """Undo a decision: the comment returns to its earlier status and queue; the trail records a reversal.

        Only the moderator who decided, or an admin, and only while the decision is the comment's latest
        status change. A published comment that is taken back leaves the public listing; webhooks are sent
        as for any status change.
        """
        key = current_key()
        reversal = decisions.reverse(db.session, action_id, key.name, admin=key.role == ADMIN, **data)
        return {"action": reversal.action, "comment": reversal.comment, "queues": audit.queue_sizes(db.session)}
