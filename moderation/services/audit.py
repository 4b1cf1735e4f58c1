"""The audit trail and the figures of the moderators' dashboard."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.models import APPROVED, PENDING, REJECTED, STATUSES, Article, Comment, ModerationAction


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
    query = select(Comment.reported, func.count()).where(Comment.status == PENDING)
    if article_id is not None:
        query = query.join(Article).where(Article.external_id == article_id)
    for reported, count in session.execute(query.group_by(Comment.reported)):
        sizes["reported" if reported else "pending"] = count
    return sizes


def stats(session: Session, *, decision_threshold: float, days: int = 14) -> dict:
    """Counts by status and queue, automation rate, how often moderators overruled the model, per version."""
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
