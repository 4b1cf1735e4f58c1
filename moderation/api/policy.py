"""The routing policy: the site's budget for automatic decisions, and what it buys with the serving model."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from moderation.api.auth import ADMIN, MODERATOR, Blueprint, current_key
from moderation.extensions import classifier, db
from moderation.services import policy as policy_service

blp = Blueprint("policy", __name__, url_prefix="/v1/moderation",
                description="The routing policy: leak budget, reject precision, removal rate, audit rate.")


class Fraction(fields.Float):
    """A JSON number (not a string) within a range; NaN and infinities refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Must be a number.")
        return super()._deserialize(value, attr, data, **kwargs)


def _range(name: str) -> validate.Range:
    _, low, high, low_ok, high_ok = policy_service.LIMITS[name]
    return validate.Range(min=low, max=high, min_inclusive=low_ok, max_inclusive=high_ok)


class PolicyValues(Schema):
    max_leak = Fraction(required=True, validate=_range("max_leak"), metadata={
        "description": "At most this share of automatically published comments would have been removed by the "
                       "site's moderators (95 % upper confidence bound). Above 0, below 1.", "example": 0.02})
    min_reject_precision = Fraction(required=True, validate=_range("min_reject_precision"), metadata={
        "description": "At least this share of automatically rejected comments would have been removed by them "
                       "(95 % lower confidence bound). Above 0, at most 1.", "example": 0.95})
    expected_removal_rate = Fraction(required=True, validate=_range("expected_removal_rate"), metadata={
        "description": "The share of all comments the site's moderators remove. Above 0, below 1.", "example": 0.1})
    audit_rate = Fraction(required=True, validate=_range("audit_rate"), metadata={
        "description": "This random share of the model's own decisions waits for a person (`audit_sample`). "
                       "0 to 1.", "example": 0.02})


class ThresholdsOut(Schema):
    approve = fields.Float(required=True, metadata={"description": "Toxicity below this publishes."})
    reject = fields.Float(required=True, metadata={"description": "Toxicity at or above this rejects."})
    approve_source = fields.String(required=True, metadata={
        "description": "`calibration` (from the policy), `manual` (MODERATION_APPROVE_THRESHOLD) or `model`."})
    reject_source = fields.String(required=True)


class CurvePointOut(Schema):
    max_leak = fields.Float(required=True)
    approve_threshold = fields.Float(required=True)
    approved_share = fields.Float(required=True)
    automated_share = fields.Float(required=True)


class ExpectedOut(Schema):
    """What the calibrated thresholds are expected to do at the site's removal rate (on the calibration data)."""

    approved_share = fields.Float(required=True)
    rejected_share = fields.Float(required=True)
    automated_share = fields.Float(required=True)
    leak = fields.Float(allow_none=True, required=True)
    leak_upper = fields.Float(allow_none=True, required=True)
    reject_precision = fields.Float(allow_none=True, required=True)
    reject_precision_lower = fields.Float(allow_none=True, required=True)
    removal_rate = fields.Float(required=True, metadata={
        "description": "The removal rate the thresholds are calibrated at: the site's as `retrain` measured it from "
                       "its decisions, else the policy's expected_removal_rate."})
    removed_samples = fields.Float(required=True)
    kept_samples = fields.Float(required=True)
    source = fields.String(required=True)
    curve = fields.List(fields.Nested(CurvePointOut), required=True, metadata={
        "description": "The share that would be decided without a person at a leak of 1, 2, 3 and 5 %."})


class RemovalRatesOut(Schema):
    """The site's removal rate as its decisions measure it, as the policy expects it, and which one routing uses."""

    measured = fields.Float(allow_none=True, required=True, metadata={
        "description": "The share of removed comments among all usable moderator decisions, weighted as `retrain` "
                       "weighs them (audit samples stand for 1 / audit rate comments); null without any."})
    measured_decisions = fields.Integer(required=True, metadata={"description": "The usable decisions behind it."})
    expected = fields.Float(required=True, metadata={"description": "The policy's expected_removal_rate."})
    in_use = fields.Float(allow_none=True, required=True, metadata={
        "description": "The rate the serving thresholds are calibrated at; null when the model has no calibration."})
    in_use_source = fields.String(allow_none=True, required=True, validate=validate.OneOf(["measured", "expected"]),
                                  metadata={"description": "`measured`: by the retrain that made the serving model; "
                                                           "`expected`: the policy's; null: no calibration."})


class ChangeOut(Schema):
    changed_by = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    old_value = fields.Dict(allow_none=True, required=True)
    new_value = fields.Dict(required=True)


class PolicyOut(Schema):
    policy = fields.Nested(PolicyValues, required=True)
    source = fields.String(required=True, validate=validate.OneOf(["environment", "database"]))
    updated_by = fields.String(allow_none=True, required=True)
    updated_at = fields.AwareDateTime(allow_none=True, required=True)
    model_version = fields.String(required=True)
    thresholds = fields.Nested(ThresholdsOut, required=True)
    expected = fields.Nested(ExpectedOut, allow_none=True, required=True, metadata={
        "description": "null when the serving model carries no calibration data."})
    removal_rate = fields.Nested(RemovalRatesOut, required=True)
    history = fields.List(fields.Nested(ChangeOut), required=True, metadata={"description": "Newest first."})


def policy_view() -> dict[str, Any]:
    """Return the policy in force with the thresholds and automation it gives the serving model."""
    serving, stored, settled = classifier.settled(db.session)
    thresholds = settled.thresholds
    expected = settled.calibration.as_dict() if settled.calibration is not None else None
    return {
        "policy": stored.policy.as_dict(),
        "source": stored.source,
        "updated_by": stored.updated_by,
        "updated_at": stored.updated_at,
        "model_version": serving.model.version,
        "thresholds": {"approve": thresholds.approve, "reject": thresholds.reject,
                       "approve_source": settled.approve_source, "reject_source": settled.reject_source},
        "expected": expected,
        "removal_rate": policy_service.removal_rates(db.session, stored.policy, calibration=settled.calibration,
                                                     evidence=serving.evidence).as_dict(),
        "history": policy_service.policy_history(db.session),
    }


@blp.route("/policy")
class RoutingPolicy(MethodView):
    @blp.response(200, PolicyOut)
    @blp.requires(MODERATOR, ADMIN)
    def get(self) -> dict[str, Any]:
        """Return the routing policy, the thresholds it gives the serving model and the automation to expect."""
        return policy_view()

    @blp.response(200, PolicyOut)
    @blp.requires(ADMIN)
    @blp.arguments(PolicyValues())
    def put(self, data: dict[str, float]) -> dict[str, Any]:
        """Set the routing policy (all four values); every worker applies it within seconds, no restart."""
        policy_service.update_policy(db.session, data, actor=current_key().name, config=current_app.config)
        db.session.commit()
        return policy_view()
