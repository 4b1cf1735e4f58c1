"""The site's decisions as labels, each with how likely it was to reach a person (its inverse-propensity weight).

Which decisions count for what (`decision_weight`):

- A comment the model held (or premoderation held: it holds whole articles, whatever they say)
  reached a person with probability 1: its decision trains, calibrates and gates with weight 1.
- A comment drawn into the audit sample reached one with probability `audit_rate` (recorded at
  intake; the policy's current rate for comments stored before it was): weight 1 / audit_rate, so the
  sample stands for every comment the model decided alone.
- A comment the model published or rejected alone and a person decided anyway (a reader reported it,
  an author appealed) was not drawn at random: it trains, but neither calibrates nor gates.
- A comment a rule routed (banned author, banned or suspect term) is the rules' business, not the
  model's: the thresholds never route such comments, so their decisions train but do not calibrate.
- Integration feedback (Coral's decisions) trains only: nothing says how those comments were chosen.

Weights of decisions routed by different model versions are pooled by what each version knows
(`pooled_weights`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.models import APPROVED, REJECTED, Comment
from moderation.services.feedback import feedback_labels

RULE_REASONS = frozenset({"author_banned", "banned_term", "suspect_term"})


@dataclass(frozen=True)
class Decision:
    """A person's decision on a comment, as a label; `weight` None: trains, but is no random sample."""

    text: str
    label: int
    key: str
    group: str
    decided_at: datetime | None
    weight: float | None
    why: str
    routed_by: str = ""  # the model version that routed the comment at intake: its weights' regime


def decision_weight(reasons: list[str], audited: bool, audit_rate: float | None,
                    fallback_audit_rate: float) -> tuple[float | None, str]:
    """Return (inverse-propensity weight or None, why) for a decided comment; see the module docstring."""
    if audited:
        rate = audit_rate if audit_rate is not None else fallback_audit_rate
        return (1.0 / rate, "audit sample") if rate > 0 else (None, "audit sample of unknown rate")
    applied = set(reasons or ())
    if applied & RULE_REASONS:
        return None, "routed by a rule"
    if not applied or "toxicity_high" in applied:
        return None, "decided by the model alone, then by a person"
    return 1.0, "held"


def site_decisions(session: Session, since: datetime | None = None, *,
                   fallback_audit_rate: float = 0.02) -> list[Decision]:
    """Moderators' decisions on comments, oldest first, each with its weight (erased comments are skipped)."""
    query = select(Comment.id, Comment.article_id, Comment.text, Comment.status, Comment.reasons, Comment.audited,
                   Comment.audit_rate, Comment.decided_at, Comment.model_version).where(
        Comment.decided_by.is_not(None), Comment.status.in_([APPROVED, REJECTED]), Comment.text != "")
    if since is not None:
        query = query.where(Comment.decided_at >= since)
    rows = []
    for cid, aid, text, status, reasons, audited, rate, decided_at, version in session.execute(
            query.order_by(Comment.id)):
        weight, why = decision_weight(list(reasons or ()), bool(audited), rate, fallback_audit_rate)
        rows.append(Decision(text, int(status == REJECTED), f"comment:{cid}", f"article:{aid}", decided_at,
                             weight, why, version))
    return rows


def feedback_decisions(session: Session, since: datetime | None = None) -> list[Decision]:
    """Integrations' feedback labels: they train only."""
    rows = []
    for text, label in feedback_labels(session, since):
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        rows.append(Decision(text, int(label), f"feedback:{digest}", f"feedback:{digest[:4]}", None, None,
                             "integration feedback"))
    return rows


def class_counts(rows: list[Decision]) -> tuple[int, int]:
    """Return (removed, kept) among `rows`."""
    removed = sum(d.label for d in rows)
    return removed, len(rows) - removed


def pooled_weights(rows: list[Decision]) -> np.ndarray:
    """Return each usable decision's weight for the calibration, pooled across the model versions that routed them.

    Under one routing (one model version) the inverse-propensity weights make its decisions stand for all
    its comments; but when that model decided most comments alone, a handful of audited ones carry weights
    of 1 / audit rate and the estimate is noisy (Kish's effective size of the version's decisions is small).
    Each version's decisions estimate the same stream, so they are pooled in proportion to how much each
    knows: a version's weights are scaled to sum to its effective size (Kish: (Σw)² / Σw²). The pooled
    effective size is then the sum of the versions' own, instead of collapsing to the smallest. Exactly
    unbiased if the site's stream does not change between versions; otherwise the versions that held more
    comments count more.
    """
    return _pool(np.asarray([d.weight for d in rows], dtype=float), np.asarray([d.routed_by for d in rows]))


def _pool(weights: np.ndarray, versions: np.ndarray) -> np.ndarray:
    pooled = np.empty_like(weights)
    for version in set(versions.tolist()):
        mine = versions == version
        total, squares = weights[mine].sum(), np.square(weights[mine]).sum()
        pooled[mine] = weights[mine] * total / squares  # sums to total² / squares, the effective size
    return pooled


def measured_removal_rate(rows: list[Decision]) -> float | None:
    """Return the site's removal rate as its usable decisions estimate it (weighted Hajek), or None without any."""
    usable = [d for d in rows if d.weight]
    return _rate([d.weight for d in usable], [d.label for d in usable], [d.routed_by for d in usable])


def _rate(weights: list[float], labels: list[int], versions: list[str]) -> float | None:
    if not weights:
        return None
    pooled = _pool(np.asarray(weights, dtype=float), np.asarray(versions))
    return float(pooled[np.asarray(labels) == 1].sum() / pooled.sum())


def site_removal_rate(session: Session, *, fallback_audit_rate: float = 0.02) -> tuple[float | None, int]:
    """Return (the site's removal rate as retrain measures it from all its decisions, the usable decisions behind it).

    The same decisions and weights as `site_decisions` and `measured_removal_rate`, read without their texts.
    """
    query = select(Comment.status, Comment.reasons, Comment.audited, Comment.audit_rate, Comment.model_version).where(
        Comment.decided_by.is_not(None), Comment.status.in_([APPROVED, REJECTED]), Comment.text != "")
    weights, labels, versions = [], [], []
    for status, reasons, audited, rate, version in session.execute(query):
        weight, _ = decision_weight(list(reasons or ()), bool(audited), rate, fallback_audit_rate)
        if weight:
            weights.append(weight)
            labels.append(int(status == REJECTED))
            versions.append(version)
    return _rate(weights, labels, versions), len(weights)


def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of weighted observations."""
    return float(weights.sum() ** 2 / np.square(weights).sum()) if len(weights) else 0.0
