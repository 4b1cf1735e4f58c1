"""Decide a new comment's status from its score and the newsroom's rules, with reason codes.

A random audit sample of the comments the model decides on its own (published or rejected by score,
not by a banned term or a banned author) is held for a person instead, with reason `audit_sample`:
the moderators' decisions on it measure the leak and the reject precision of the automatic routing
without selection bias (`moderation.services.audit.audit_estimates`).

A likely threat (the model's threat head, reason `threat_likely`) is held for a person whatever its
toxicity: never published, and not rejected by score alone either, since a newsroom may have to report
it, keep it as evidence or warn the person threatened. It goes to the top of the queue
(`moderation.services.queue`). A banned term or a banned author still rejects it, as any comment.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from moderation.models import APPROVED, PENDING, REJECTED

AUDIT_SAMPLE = "audit_sample"
THREAT_LIKELY = "threat_likely"


@dataclass(frozen=True)
class Thresholds:
    """Routing band: below `approve` publishes, at or above `reject` rejects, between waits.

    A comment that waits at or above `decision` (the model's offensive threshold) is one the model
    takes for offensive without being sure enough to reject it alone (`toxicity_likely`); below it,
    `toxicity_uncertain`. A share `audit_rate` of the model's own decisions is held as an audit sample.
    """

    approve: float
    reject: float
    decision: float | None = None
    audit_rate: float = 0.0


@dataclass(frozen=True)
class Routing:
    """A status with its reasons; `auto` is what the model decided on its own (None: it did not decide)."""

    status: str
    reasons: tuple[str, ...]
    auto: str | None = None
    audited: bool = False


@dataclass(frozen=True)
class Rules:
    """What besides the score applies to one comment."""

    author_banned: bool = False
    banned_terms: tuple[str, ...] = ()
    suspect_terms: tuple[str, ...] = ()
    premoderation: bool = False


def route(toxicity: float, thresholds: Thresholds, rules: Rules = Rules(), *,  # noqa: B008
          draw: float = 1.0, threat: bool = False) -> Routing:
    """Route one scored comment: any reject reason rejects, else any hold reason holds, else publish.

    `draw` is a uniform random number in [0, 1): a decision the model takes alone goes to the audit
    sample when `draw` is below the audit rate. `threat` (a likely threat) holds the comment with
    `threat_likely` instead of any decision by score; rules reject it as before.
    """
    reject = [
        code for code, applies in (
            ("author_banned", rules.author_banned),
            ("banned_term", bool(rules.banned_terms)),
            ("toxicity_high", toxicity >= thresholds.reject),
        ) if applies
    ]
    if reject and reject != ["toxicity_high"]:
        return Routing(REJECTED, tuple(reject))
    if reject and not threat:
        return _audited(Routing(REJECTED, tuple(reject), auto=REJECTED), thresholds, draw)
    # Above the reject threshold only a threat gets here: the model takes it for offensive.
    likely = toxicity >= thresholds.reject or (
        thresholds.decision is not None and toxicity >= max(thresholds.decision, thresholds.approve))
    hold = [
        code for code, applies in (
            (THREAT_LIKELY, threat),
            ("premoderation", rules.premoderation),
            ("suspect_term", bool(rules.suspect_terms)),
            ("toxicity_likely", likely),
            ("toxicity_uncertain", toxicity >= thresholds.approve and not likely),
        ) if applies
    ]
    if hold:
        return Routing(PENDING, tuple(hold))
    return _audited(Routing(APPROVED, (), auto=APPROVED), thresholds, draw)


def _audited(routing: Routing, thresholds: Thresholds, draw: float) -> Routing:
    if draw < thresholds.audit_rate:
        return Routing(PENDING, (AUDIT_SAMPLE,), auto=routing.auto, audited=True)
    return routing


# One generator per process, re-seeded from the OS in every forked worker (gunicorn forks after the
# app may have been imported: without the re-seed all workers would draw the same sequence).
_audit_random = random.Random()
os.register_at_fork(after_in_child=_audit_random.seed)


def seed_audit_sampling(seed: int | None) -> None:
    """Seed this process's audit draws (tests); None re-seeds from the operating system."""
    _audit_random.seed(seed)


def audit_draw() -> float:
    """Return the next uniform number in [0, 1) for the audit sample."""
    return _audit_random.random()
