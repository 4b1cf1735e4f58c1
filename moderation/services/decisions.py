"""Moderators' decisions after the fact: the recent ones, and taking one back (undo) as an audit row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from moderation.db import begin_write
from moderation.errors import Conflict, Forbidden, InvalidInput, NotFound
from moderation.models import PENDING, Comment, ModerationAction
from moderation.services.comments import get_comment
from moderation.services.outbox import record_status_change
from moderation.services.privacy import ERASED

REVERSAL = "moderator_reversal"
# Only these rows are a person's decision on a comment; routing, report pulls, erasures and reversals are not.
DECISION_REASONS = frozenset({"moderator_approve", "moderator_reject"})


def is_decision(action: ModerationAction) -> bool:
    """Whether an audit row is a moderator's approve or reject (the rows an undo can take back)."""
    return (action.moderator is not None and action.reverses_action_id is None
            and bool(action.reasons) and action.reasons[0] in DECISION_REASONS)


@dataclass(frozen=True)
class _State:
    """What a status change overwrites on the comment: enough to put it back."""

    status: str | None
    reported: bool
    decided_by: str | None
    decided_at: datetime | None


def _state_before(actions: list[ModerationAction], target: ModerationAction) -> _State:
    """Replay a comment's audit rows up to `target` and return the comment's state just before it."""
    before: dict[int, _State] = {}
    state = _State(None, False, None, None)
    for action in actions:
        if action.id == target.id:
            return state
        before[action.id] = state
        if action.reverses_action_id is not None and action.reverses_action_id in before:
            state = before[action.reverses_action_id]
        elif action.moderator is None:
            # Intake routing, or enough reader reports pulling a published comment into the reported queue.
            state = _State(action.to_status, action.to_status == PENDING and "reported" in action.reasons,
                           None, None)
        else:
            state = _State(action.to_status, False, action.moderator, action.created_at)
    raise NotFound(f"action {target.id} is not in the trail of comment {target.comment_id}")


@dataclass(frozen=True)
class Reversal:
    action: ModerationAction
    comment: Comment


def reverse(session: Session, action_id: int, moderator: str, *, admin: bool, reason: str | None = None) -> Reversal:
    """Take back a decision: the comment returns to its status and queue before it, with an audit row.

    Only the moderator who decided (or an admin) may, and only while the decision is still the comment's
    latest status change: once anyone decided it again, or it was taken back already, it is a 409.
    """
    begin_write(session)
    action = session.get(ModerationAction, action_id)
    if action is None:
        raise NotFound(f"action {action_id} does not exist")
    if not is_decision(action):
        raise InvalidInput(f"action {action_id} is not a moderator's approve or reject; only those can be reversed",
                           fields={"action_id": ["Not a moderator's decision."]})
    if not admin and action.moderator != moderator:
        raise Forbidden(f"action {action_id} was decided by {action.moderator}; only they or an admin can reverse it")
    comment = get_comment(session, action.comment_id)
    if comment.author_id == ERASED:
        raise Conflict(f"comment {comment.id} was erased; its decisions cannot be reversed")
    actions = list(session.scalars(select(ModerationAction).where(ModerationAction.comment_id == comment.id)
                                   .order_by(ModerationAction.id)))
    latest = actions[-1]
    if latest.id != action.id:
        if latest.reverses_action_id == action.id:
            raise Conflict(f"action {action_id} was already reversed (action {latest.id})")
        raise Conflict(f"comment {comment.id} was changed since action {action_id} (action {latest.id}"
                       + (f" by {latest.moderator}" if latest.moderator else "") + "); it cannot be reversed")
    if comment.status != action.to_status:
        raise Conflict(f"comment {comment.id} is {comment.status}, not {action.to_status} as action {action_id} "
                       "left it; it cannot be reversed")
    before = _state_before(actions, action)
    current = comment.status
    comment.status, comment.reported = before.status, before.reported
    comment.decided_by, comment.decided_at = before.decided_by, before.decided_at
    comment.claimed_by = comment.claimed_until = None
    note = f"reversal of action {action_id}" + (f": {reason}" if reason else "")
    row = ModerationAction(comment_id=comment.id, moderator=moderator, from_status=current, to_status=before.status,
                           reasons=[REVERSAL], note=note, reverses_action_id=action_id)
    session.add(row)
    record_status_change(session, comment, current, by_person=True, reasons=[REVERSAL])
    session.commit()
    return Reversal(row, comment)


@dataclass(frozen=True)
class DecisionEntry:
    """A person's status change with its comment, and whether it still stands or can be taken back."""

    action: ModerationAction
    comment: Comment
    reversed_by: int | None
    reversible: bool


@dataclass(frozen=True)
class DecisionPage:
    entries: list[DecisionEntry]
    next_before_id: int | None


def recent_decisions(session: Session, *, limit: int, before_id: int | None = None,
                     moderator: str | None = None) -> DecisionPage:
    """Return moderators' status changes (decisions and reversals), newest first; `before_id` pages back."""
    query = select(ModerationAction).where(ModerationAction.moderator.is_not(None))
    if moderator is not None:
        query = query.where(ModerationAction.moderator == moderator)
    if before_id is not None:
        query = query.where(ModerationAction.id < before_id)
    rows = list(session.scalars(query.order_by(ModerationAction.id.desc()).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    ids = {row.comment_id for row in rows}
    comments = {c.id: c for c in session.scalars(select(Comment).where(Comment.id.in_(ids)))} if ids else {}
    latest: dict[int, int] = {}
    reversed_by: dict[int, int] = {}
    if ids:
        latest = dict(session.execute(select(ModerationAction.comment_id, func.max(ModerationAction.id))
                                      .where(ModerationAction.comment_id.in_(ids))
                                      .group_by(ModerationAction.comment_id)).all())
        reversed_by = dict(session.execute(select(ModerationAction.reverses_action_id, ModerationAction.id)
                                           .where(ModerationAction.comment_id.in_(ids),
                                                  ModerationAction.reverses_action_id.is_not(None))).all())
    entries = []
    for row in rows:
        comment = comments[row.comment_id]
        reversible = (is_decision(row) and latest.get(comment.id) == row.id and comment.author_id != ERASED
                      and comment.status == row.to_status)
        entries.append(DecisionEntry(row, comment, reversed_by.get(row.id), reversible))
    return DecisionPage(entries, rows[-1].id if more else None)
