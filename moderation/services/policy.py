"""The routing policy the site sets: defaults from the environment, changes stored in the database.

Every process re-reads the stored policy at most every CACHE_SECONDS (like the word lists), so a
change made in the dashboard or through the API applies in every worker and instance within seconds,
and at once in the process that made it. Each change is recorded in `setting_changes`: who, when,
from which policy to which.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.errors import InvalidInput
from moderation.ml.calibration import Calibration, Evidence, Policy
from moderation.models import Setting, SettingChange
from moderation.services.site_decisions import site_removal_rate

POLICY_KEY = "routing_policy"
CACHE_SECONDS = 5.0
# field: (config key, lowest, highest, lowest allowed itself, highest allowed itself)
LIMITS: dict[str, tuple[str, float, float, bool, bool]] = {
    "max_leak": ("MAX_LEAK", 0.0, 1.0, False, False),
    "min_reject_precision": ("MIN_REJECT_PRECISION", 0.0, 1.0, False, True),
    "expected_removal_rate": ("EXPECTED_REMOVAL_RATE", 0.0, 1.0, False, False),
    "audit_rate": ("AUDIT_RATE", 0.0, 1.0, True, True),
}


@dataclass(frozen=True)
class RoutingPolicy:
    """The site's budget for automatic decisions and the share of them it audits."""

    max_leak: float = 0.02
    min_reject_precision: float = 0.95
    expected_removal_rate: float = 0.10
    audit_rate: float = 0.02

    def for_calibration(self, measured_removal_rate: float | None = None) -> Policy:
        """Return what the threshold calibration needs of this policy (at the measured removal rate, if any)."""
        return Policy(max_leak=self.max_leak, min_reject_precision=self.min_reject_precision,
                      removal_rate=measured_removal_rate or self.expected_removal_rate)

    def as_dict(self) -> dict[str, float]:
        """Return the policy as plain numbers."""
        return asdict(self)


@dataclass(frozen=True)
class StoredPolicy:
    """The policy in force, where it comes from, and who set it last."""

    policy: RoutingPolicy
    source: str  # "environment" or "database"
    updated_by: str | None = None
    updated_at: datetime | None = None


def policy_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """Return per-field messages for values outside their range (empty when all are fine)."""
    errors: dict[str, list[str]] = {}
    for name, (_, low, high, low_ok, high_ok) in LIMITS.items():
        value = values.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            errors[name] = ["Must be a number."]
            continue
        if value < low or value > high or (value == low and not low_ok) or (value == high and not high_ok):
            errors[name] = [f"Must be {'at least' if low_ok else 'above'} {low:g} and "
                            f"{'at most' if high_ok else 'below'} {high:g}."]
    return errors


def default_policy(config: dict[str, Any]) -> RoutingPolicy:
    """Return the policy the environment sets (MODERATION_MAX_LEAK and the others)."""
    defaults = RoutingPolicy()
    return RoutingPolicy(**{name: float(config.get(key, getattr(defaults, name)))
                            for name, (key, *_) in LIMITS.items()})


def _read(session: Session, config: dict[str, Any]) -> StoredPolicy:
    row = session.get(Setting, POLICY_KEY)
    base = default_policy(config)
    if row is None:
        return StoredPolicy(base, "environment")
    known = {f.name for f in fields(RoutingPolicy)}
    stored = {name: float(value) for name, value in (row.value or {}).items() if name in known}
    return StoredPolicy(RoutingPolicy(**{**base.as_dict(), **stored}), "database", row.updated_by, row.updated_at)


@dataclass(frozen=True)
class RemovalRates:
    """The site's removal rate as measured from its decisions, as the policy expects it, and which one routing uses."""

    measured: float | None  # from all usable decisions now, weighted as retrain weighs them; None without any
    measured_decisions: int  # the usable decisions behind it
    expected: float  # the policy's expected_removal_rate (MODERATION_EXPECTED_REMOVAL_RATE, or the stored policy)
    in_use: float | None  # the rate the serving thresholds are calibrated at; None: the model has no calibration
    in_use_source: str | None  # "measured" (by the retrain that made the serving model), "expected", or None

    def as_dict(self) -> dict[str, Any]:
        """Return the rates as plain values."""
        return asdict(self)


def removal_rates(session: Session, policy: RoutingPolicy, *, calibration: Calibration | None,
                  evidence: Evidence | None) -> RemovalRates:
    """Return the measured and the expected removal rate, and which one the serving thresholds use.

    `calibration` is what the serving model's thresholds were calibrated to under `policy` (None: no calibration
    data), `evidence` that calibration data, with the rate the retrain that made the model measured, if any.
    """
    measured, count = site_removal_rate(session, fallback_audit_rate=policy.audit_rate)
    if calibration is None:
        return RemovalRates(measured, count, policy.expected_removal_rate, None, None)
    source = "measured" if evidence is not None and evidence.measured_removal_rate is not None else "expected"
    return RemovalRates(measured, count, policy.expected_removal_rate, calibration.policy.removal_rate, source)


_cache: dict[str, tuple[StoredPolicy, float]] = {}


def forget_cached_policy() -> None:
    """Make the next read fetch the policy from the database."""
    _cache.clear()


def current_policy(session: Session, config: dict[str, Any]) -> StoredPolicy:
    """Return the policy in force, re-read from the database at most every CACHE_SECONDS."""
    database = str(session.get_bind().url)
    now = time.monotonic()
    cached = _cache.get(database)
    if cached is not None and cached[1] > now:
        return cached[0]
    stored = _read(session, config)
    _cache[database] = (stored, now + CACHE_SECONDS)
    return stored


def update_policy(session: Session, values: dict[str, Any], *, actor: str, config: dict[str, Any]) -> StoredPolicy:
    """Store a new policy (all four values) and its audit row; the caller commits.

    Raises InvalidInput, changing nothing, when a value is out of range. Storing the policy in force
    again records nothing.
    """
    errors = policy_errors(values)
    if errors:
        raise InvalidInput("the routing policy has values out of range", fields=errors)
    new = RoutingPolicy(**{name: float(values[name]) for name in LIMITS})
    old = _read(session, config)
    if old.source == "database" and old.policy == new:
        return old
    now = utcnow()
    row = session.get(Setting, POLICY_KEY)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Setting(key=POLICY_KEY, value=new.as_dict(), updated_by=actor, updated_at=now))
        except IntegrityError:  # another admin stored the first policy at the same moment: update theirs
            row = session.get(Setting, POLICY_KEY, populate_existing=True)
    if row is not None:
        row.value, row.updated_by, row.updated_at = new.as_dict(), actor, now
    session.add(SettingChange(key=POLICY_KEY, old_value=old.policy.as_dict(), new_value=new.as_dict(),
                              changed_by=actor, created_at=now))
    session.flush()
    forget_cached_policy()
    return StoredPolicy(new, "database", actor, now)


def policy_history(session: Session, *, limit: int = 20) -> list[SettingChange]:
    """Return the latest changes of the routing policy, newest first."""
    return list(session.scalars(select(SettingChange).where(SettingChange.key == POLICY_KEY)
                                .order_by(SettingChange.id.desc()).limit(limit)))
