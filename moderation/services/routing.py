"""Decide a new comment's status from its score and the newsroom's rules, with reason codes."""

from __future__ import annotations

from dataclasses import dataclass

from moderation.models import APPROVED, PENDING, REJECTED


@dataclass(frozen=True)
class Thresholds:
    """Routing band: below `approve` publishes, at or above `reject` rejects, between waits.

    A comment that waits at or above `decision` (the model's offensive threshold) is one the model
    takes for offensive without being sure enough to reject it alone (`toxicity_likely`); below it,
    `toxicity_uncertain`.
    """

    approve: float
    reject: float
    decision: float | None = None


@dataclass(frozen=True)
class Routing:
    status: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    """What besides the score applies to one comment."""

    author_banned: bool = False
    banned_terms: tuple[str, ...] = ()
    suspect_terms: tuple[str, ...] = ()
    premoderation: bool = False


def route(toxicity: float, thresholds: Thresholds, rules: Rules = Rules()) -> Routing:  # noqa: B008
    """Route one scored comment: any reject reason rejects, else any hold reason holds, else publish."""
    reject = [
        code for code, applies in (
            ("author_banned", rules.author_banned),
            ("banned_term", bool(rules.banned_terms)),
            ("toxicity_high", toxicity >= thresholds.reject),
        ) if applies
    ]
    if reject:
        return Routing(REJECTED, tuple(reject))
    likely = thresholds.decision is not None and toxicity >= max(thresholds.decision, thresholds.approve)
    hold = [
        code for code, applies in (
            ("premoderation", rules.premoderation),
            ("suspect_term", bool(rules.suspect_terms)),
            ("toxicity_likely", likely),
            ("toxicity_uncertain", toxicity >= thresholds.approve and not likely),
        ) if applies
    ]
    if hold:
        return Routing(PENDING, tuple(hold))
    return Routing(APPROVED, ())
