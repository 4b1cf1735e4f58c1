"""Turn a toxicity score into a status and machine-readable reasons."""

from __future__ import annotations

from dataclasses import dataclass

from moderation.models import APPROVED, PENDING, REJECTED


@dataclass(frozen=True)
class Thresholds:
    """Routing band: below `approve` publishes, at or above `reject` rejects, between waits."""

    approve: float
    reject: float


@dataclass(frozen=True)
class Routing:
    status: str
    reasons: tuple[str, ...]


def route(toxicity: float, thresholds: Thresholds) -> Routing:
    """Route one scored comment by the thresholds."""
    if toxicity >= thresholds.reject:
        return Routing(REJECTED, ("toxicity_high",))
    if toxicity >= thresholds.approve:
        return Routing(PENDING, ("toxicity_uncertain",))
    return Routing(APPROVED, ())
