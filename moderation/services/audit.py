"""The audit trail and the figures of the moderators' dashboard."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.ml.calibration import proportion_interval
from moderation.models import APPROVED, PENDING, REJECTED, STATUSES, Article, Comment, ModerationAction
from moderation.services.policy import RoutingPolicy


def audit_trail(
    session: Session, *, comment_id: int | None, moderator: str | None, since: datetime | None, limit: int,
    before_id: int | None,
) -> list[ModerationAction]:
    """Return actions newest first, filtered; `before_id` pages backwards."""
    query = select(ModerationAction)
    if comment_id is not None:
        query = query.where(ModerationAction.comment_id == comment_id)
    if moderator is not None:
        query = query.where(ModerationAction.moderator == moderator)
    if since is not None:
        query = query.where(ModerationAction.created_at >= since)
    if before_id is not None:
        query = query.where(ModerationAction.id < before_id)
    return list(session.scalars(query.order_by(ModerationAction.id.desc()).limit(limit)))


def _first_routing():
    """Per comment, the status the system gave it on arrival (its first audit row)."""
    first = (
        select(ModerationAction.comment_id, func.min(ModerationAction.id).label("first_id"))
        .group_by(ModerationAction.comment_id).subquery()
    )
    return (
        select(ModerationAction.comment_id, ModerationAction.to_status.label("routed"))
        .join(first, ModerationAction.id == first.c.first_id).subquery()
    )


def queue_sizes(session: Session, article_id: str | None = None) -> dict[str, int]:
    """Return how many comments wait in each queue, of one article (the site's id) if given."""
    sizes = {"pending": 0, "reported": 0}
    # Reported comments a moderator had approved wait while still published (status approved).
    waiting = or_(Comment.status == PENDING, and_(Comment.status == APPROVED, Comment.reported.is_(True)))
    query = select(Comment.reported, func.count()).where(waiting)
    if article_id is not None:
        query = query.join(Article).where(Article.external_id == article_id)
    for reported, count in session.execute(query.group_by(Comment.reported)):
        sizes["reported" if reported else "pending"] = count
    return sizes


def stats(session: Session, *, decision_threshold: float, policy: RoutingPolicy | None = None, days: int = 14) -> dict:
    """Counts by status and queue, automation rate, how often moderators overruled the model, per version; the
    leak and reject precision measured on the audit sample beside the budget of `policy` (default: the defaults)."""
    policy = policy or RoutingPolicy()
    by_status = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(select(Comment.status, func.count()).group_by(Comment.status)):
        by_status[status] = count
    total = sum(by_status.values())
    queues = queue_sizes(session)
    automatic = session.scalar(
        select(func.count()).where(Comment.status != PENDING, Comment.decided_by.is_(None))
    ) or 0

    # The model "says reject" when its score reaches the decision threshold; a person overrules it when
    # their final decision says otherwise.
    model_rejects = Comment.toxicity >= decision_threshold
    human_rejects = Comment.status == REJECTED
    routed = _first_routing()
    rows = session.execute(
        select(
            Comment.model_version,
            func.count(),
            func.sum(case((model_rejects == human_rejects, 1), else_=0)),
            func.sum(case((routed.c.routed != PENDING, 1), else_=0)),
        )
        .join(routed, routed.c.comment_id == Comment.id)
        .where(Comment.decided_by.is_not(None))
        .group_by(Comment.model_version)
    ).all()
    per_version = [
        {"model_version": version, "human_decisions": n, "agreed": int(agreed or 0),
         "agreement": round((agreed or 0) / n, 4), "overruled_automatic": int(auto or 0)}
        for version, n, agreed, auto in sorted(rows)
    ]
    decisions = sum(v["human_decisions"] for v in per_version)
    overruled = decisions - sum(v["agreed"] for v in per_version)
    return {
        "total": total,
        "by_status": by_status,
        "queues": queues,
        "decided_without_person": automatic,
        "automation_rate": round(automatic / total, 4) if total else None,
        "human_decisions": decisions,
        "overruled": overruled,
        "overrule_rate": round(overruled / decisions, 4) if decisions else None,
        "by_model_version": per_version,
        "daily": daily(session, days=days),
        "audit": {"budget": {"max_leak": policy.max_leak, "min_reject_precision": policy.min_reject_precision,
                             "audit_rate": policy.audit_rate}, **audit_estimates(session)},
    }


def daily(session: Session, *, days: int) -> list[dict]:
    """Comments of the last `days` days by arrival day and outcome (automatic or by a person)."""
    start = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = func.date(Comment.created_at)
    rows = session.execute(
        select(day, Comment.status, Comment.decided_by.is_(None), func.count())
        .where(Comment.created_at >= start).group_by(day, Comment.status, Comment.decided_by.is_(None))
    )
    table: dict[str, dict[str, int]] = {}
    for i in range(days):
        key = (start + timedelta(days=i)).date().isoformat()
        table[key] = {"approved_auto": 0, "rejected_auto": 0, "approved_moderator": 0, "rejected_moderator": 0,
                      "pending": 0}
    for when, status, automatic, count in rows:
        key = when.isoformat() if isinstance(when, date) else str(when)[:10]
        if key not in table:
            continue
        if status == PENDING:
            table[key]["pending"] += count
        else:
            table[key][f"{'approved' if status == APPROVED else 'rejected'}_{'auto' if automatic else 'moderator'}"] \
                += count
    return [{"day": key, **counts} for key, counts in table.items()]


def _estimate(decided: int, removed: int) -> dict:
    """A share of the moderators' decisions with its two-sided 95 % Clopper–Pearson interval."""
    interval = proportion_interval(removed, decided)
    return {"decided": decided, "removed": removed,
            "share": round(removed / decided, 4) if decided else None,
            "low": round(interval[0], 4) if interval else None, "high": round(interval[1], 4) if interval else None}


def _audit_row(counts: dict[tuple[str, str], int]) -> dict:
    """Turn counts by (what the model would have done, final status) into the leak and reject precision."""
    publish = {status: counts.get((APPROVED, status), 0) for status in STATUSES}
    reject = {status: counts.get((REJECTED, status), 0) for status in STATUSES}
    return {
        "sampled": sum(publish.values()) + sum(reject.values()),
        "pending": publish[PENDING] + reject[PENDING],
        "leak": _estimate(publish[APPROVED] + publish[REJECTED], publish[REJECTED]),
        "reject_precision": _estimate(reject[APPROVED] + reject[REJECTED], reject[REJECTED]),
    }


def audit_estimates(session: Session, *, weeks: int = 12) -> dict:
    """Estimate the automatic routing's leak and reject precision from the moderators' decisions on the audit sample.

    The audit sample is drawn at random among the comments the model would publish or reject on its own,
    so among the decided ones, the share the moderators rejected estimates, without selection bias, the
    leak of automatic publishing (would-publish comments) and the precision of automatic rejection
    (would-reject comments). Per model version, and per ISO week of arrival for the last `weeks` weeks.
    """
    day = func.date(Comment.created_at)
    rows = session.execute(
        select(Comment.model_version, day, Comment.auto_route, Comment.status, func.count())
        .where(Comment.audited.is_(True))
        .group_by(Comment.model_version, day, Comment.auto_route, Comment.status)
    ).all()
    overall: dict[tuple[str, str], int] = {}
    by_version: dict[str, dict[tuple[str, str], int]] = {}
    by_week: dict[str, dict[tuple[str, str], int]] = {}
    today = utcnow().date()
    oldest = today - timedelta(days=today.weekday(), weeks=weeks - 1)  # the Monday `weeks` ISO weeks back
    for version, when, auto, status, count in rows:
        when = when if isinstance(when, date) else date.fromisoformat(str(when)[:10])
        for table in (overall, by_version.setdefault(version, {})):
            table[(auto, status)] = table.get((auto, status), 0) + count
        if when >= oldest:
            year, week, _ = when.isocalendar()
            week_table = by_week.setdefault(f"{year}-W{week:02d}", {})
            week_table[(auto, status)] = week_table.get((auto, status), 0) + count
    return {
        "overall": _audit_row(overall),
        "by_model_version": [{"model_version": v, **_audit_row(c)} for v, c in sorted(by_version.items())],
        "by_week": [{"week": w, **_audit_row(c)} for w, c in sorted(by_week.items())],
    }
