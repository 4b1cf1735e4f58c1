"""Turn service results into what the pages show: German labels, highlighted text, the daily chart."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from moderation.ml import Highlight, LoadedModel
from moderation.models import Comment
from moderation.services.decisions import REVERSAL, DecisionEntry
from moderation.services.queue import QueueItem
from moderation.services.routing import Thresholds

CATEGORIES = {"insult": "Beleidigung", "abuse": "Schmähung", "profanity": "Vulgärsprache", "threat": "Drohung"}
REASONS = {
    "threat_likely": "Drohung",
    "toxicity_uncertain": "Modell unsicher",
    "toxicity_likely": "Wahrscheinlich toxisch",
    "toxicity_high": "Hohe Toxizität",
    "suspect_term": "Verdächtiger Begriff",
    "banned_term": "Gesperrter Begriff",
    "premoderation": "Vorab-Moderation",
    "author_banned": "Autor gesperrt",
    "reported": "Gemeldet",
    "audit_sample": "Stichprobe",
}
# Shown instead of "Modell unsicher" for a comment the score does not hold: it waits because the approve
# threshold was 0 (nothing is published automatically) or lower when it arrived.
NOT_AUTOMATED = "Keine automatische Freigabe"
SCORE_REASONS = ("toxicity_uncertain",)
# German month abbreviations as in "7. Dez. 2026" (the CLDR forms).
MONTHS = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez.")
REPORT_REASONS = {
    "insult": "Beleidigung", "spam": "Spam", "off_topic": "Themenfremd",
    "misinformation": "Falschinformation", "other": "Sonstiges",
}
STATUSES = {"approved": "freigegeben", "pending": "wartet", "rejected": "abgelehnt"}
ACTIONS = {"moderator_approve": "Freigegeben", "moderator_reject": "Abgelehnt", REVERSAL: "Zurückgenommen",
           "author_erased": "Autor gelöscht"}


def label(mapping: dict[str, str], code: str | None) -> str:
    """Return the German label of a code, or the code itself if we have none."""
    if code is None:
        return "–"
    return mapping.get(code, code)


def percent(value: float | None, digits: int = 1) -> str:
    """Format a fraction as a German percentage ("99,7 %"); "–" when there is nothing to show.

    Only 0 and 1 themselves read as 0 % and 100 %: a score of 0.99996 is not a certainty.
    """
    if value is None:
        return "–"
    step = 10.0 ** -digits
    shown = round(value * 100, digits)
    if value < 1 and shown >= 100:
        shown = 100 - step
    elif value > 0 and shown <= 0:
        shown = step
    return f"{shown:.{digits}f}".replace(".", ",") + " %"


def budget_verdict(estimate: dict, budget: float, *, at_most: bool) -> tuple[str, str]:
    """Judge a measured share against its budget by its 95 % interval: (German verdict, CSS class).

    `at_most`: the share must stay at or below the budget (leak); else at or above it (reject precision).
    """
    if not estimate["decided"]:
        return "keine Daten", "verdict-none"
    low, high = estimate["low"], estimate["high"]
    if (high <= budget) if at_most else (low >= budget):
        return "eingehalten", "verdict-ok"
    if (low > budget) if at_most else (high < budget):
        return "verfehlt", "verdict-bad"
    return "noch unsicher", "verdict-open"


def local_time(when: datetime | None, zone: ZoneInfo) -> str:
    """Format a UTC time in the newsroom's zone, the German way ("7. Dez. 2026, 09:41")."""
    if when is None:
        return "–"
    local = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(zone)
    return f"{local.day}. {MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"


def reason_labels(codes: Iterable[str], toxicity: float, thresholds: Thresholds) -> list[str]:
    """Return the German labels of why a comment waits; "Modell unsicher" only where the score holds it.

    A score below the approve threshold in force, or any score under a threshold of 0, held nothing by
    itself: the label goes, or says that nothing was published automatically if it was the only reason.
    """
    codes = list(codes)
    held_by_score = thresholds.approve > 0 and toxicity >= thresholds.approve
    labels = [label(REASONS, code) for code in codes if code not in SCORE_REASONS or held_by_score]
    if not labels and codes:
        labels.append(NOT_AUTOMATED)
    return labels


def highlighted(text: str, highlights: Iterable[Highlight]) -> Markup:
    """Return the escaped text with each highlight span wrapped in <mark>, its weight as tooltip."""
    parts: list[Markup] = []
    position = 0
    for span in sorted(highlights, key=lambda h: (h.start, h.end)):
        if span.start < position or not span.start < span.end <= len(text):
            continue  # overlapping or out of range: leave that stretch plain
        weight = f"{span.weight:.2f}".replace(".", ",")
        parts.append(escape(text[position:span.start]))
        parts.append(Markup('<mark title="Gewicht {}">{}</mark>').format(weight, text[span.start:span.end]))
        position = span.end
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


@dataclass(frozen=True)
class QueueEntry:
    """One queued comment as the queue page shows it."""

    comment: Comment
    article_id: str
    article_title: str | None
    article_url: str | None
    created: str
    created_iso: str
    text: Markup
    toxicity: str
    toxicity_width: int
    level: str
    category: str
    reasons: list[str]
    report_reasons: list[tuple[str, int]]
    threat: bool  # held as a likely threat: its reason ("Drohung", always the first) is marked
    approved: int
    rejected: int
    banned: bool
    ban_until: str | None
    claimed_by: str | None


def iso(when: datetime | None) -> str:
    """Return a stored time as ISO 8601 in UTC, for a <time datetime> attribute."""
    if when is None:
        return ""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def queue_entries(
    items: Sequence[QueueItem], model: LoadedModel, thresholds: Thresholds, now: datetime, zone: ZoneInfo
) -> list[QueueEntry]:
    """Prepare queue items for display, highlighting with the serving model what held each comment."""
    entries = []
    for item in items:
        comment = item.comment
        live_claim = comment.claimed_until is not None and comment.claimed_until > now
        article = comment.article
        entries.append(QueueEntry(
            comment=comment,
            article_id=comment.article_external_id,
            article_title=article.title,
            article_url=article.url,
            created=local_time(comment.created_at, zone),
            created_iso=iso(comment.created_at),
            text=highlighted(comment.text, model.score(comment.text, above=thresholds.approve).highlights),
            toxicity=percent(comment.toxicity),
            toxicity_width=max(1, round(comment.toxicity * 100)),
            level=("high" if comment.toxicity >= thresholds.reject
                   else "mid" if comment.toxicity >= thresholds.approve else "low"),
            category=label(CATEGORIES, comment.category) if comment.category else "",
            reasons=reason_labels(comment.reasons, comment.toxicity, thresholds),
            report_reasons=sorted(((label(REPORT_REASONS, r), n) for r, n in item.report_reasons.items()),
                                  key=lambda pair: -pair[1]),
            threat=bool(comment.threat_likely),
            approved=item.history.approved,
            rejected=item.history.rejected,
            banned=item.history.banned,
            ban_until=local_time(item.history.ban_until, zone) if item.history.ban_until else None,
            claimed_by=comment.claimed_by if live_claim else None,
        ))
    return entries


@dataclass(frozen=True)
class DecidedEntry:
    """One row of the "Entschieden" tab."""

    action_id: int
    comment: Comment
    article_id: str
    article_title: str | None
    article_url: str | None
    moderator: str
    when: str
    when_iso: str
    what: str
    tone: str
    change: str
    note: str | None
    reverses: int | None
    reversed_by: int | None
    may_reverse: bool


def _reason(note: str | None, reverses: int | None) -> str | None:
    """The moderator's own words of an audit note (a reversal's note starts with what it reverses)."""
    if note is None or reverses is None:
        return note
    prefix = f"reversal of action {reverses}"
    if note.startswith(prefix):
        return note[len(prefix):].lstrip(": ") or None
    return note


def decided_entries(entries: Sequence[DecisionEntry], zone: ZoneInfo, viewer: str, *, admin: bool
                    ) -> list[DecidedEntry]:
    """Prepare recent decisions for display; `may_reverse` only where this viewer may take one back."""
    rows = []
    for entry in entries:
        action, comment = entry.action, entry.comment
        rows.append(DecidedEntry(
            action_id=action.id,
            comment=comment,
            article_id=comment.article_external_id,
            article_title=comment.article.title,
            article_url=comment.article.url,
            moderator=action.moderator or "System",
            when=local_time(action.created_at, zone),
            when_iso=iso(action.created_at),
            what=label(ACTIONS, action.reasons[0] if action.reasons else None),
            tone=("chip-ok" if action.to_status == "approved" and not action.reverses_action_id
                  else "chip-bad" if action.to_status == "rejected" and not action.reverses_action_id else ""),
            change=f"{label(STATUSES, action.from_status)} → {label(STATUSES, action.to_status)}",
            note=_reason(action.note, action.reverses_action_id),
            reverses=action.reverses_action_id,
            reversed_by=entry.reversed_by,
            may_reverse=entry.reversible and (admin or action.moderator == viewer),
        ))
    return rows


# The chart's series, bottom to top: key in audit.daily, German legend, CSS class.
SERIES = (
    ("approved_auto", "Automatisch freigegeben", "s-approved-auto"),
    ("approved_moderator", "Von Moderation freigegeben", "s-approved-mod"),
    ("rejected_auto", "Automatisch abgelehnt", "s-rejected-auto"),
    ("rejected_moderator", "Von Moderation abgelehnt", "s-rejected-mod"),
    ("pending", "Wartet auf Prüfung", "s-pending"),
)


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    label: str
    total: int
    segments: list[Segment]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int
    bottom: int
    left: int
    bars: list[Bar]
    ticks: list[tuple[float, int]]
    series: tuple[tuple[str, str, str], ...]
    empty: bool


def _nice_ceiling(value: int) -> int:
    """Round up to 1, 2 or 5 times a power of ten, so the axis has round numbers."""
    if value <= 4:
        return 4
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def daily_chart(days: Sequence[dict], *, width: int = 760, height: int = 240) -> Chart:
    """Lay out stacked bars of comments per day by outcome, as coordinates for an inline SVG."""
    top, bottom, left, right = 12, 28, 40, 8
    plot_h, plot_w = height - top - bottom, width - left - right
    totals = [sum(day[key] for key, _, _ in SERIES) for day in days]
    peak = _nice_ceiling(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    bars = []
    for day, total in zip(days, totals, strict=True):
        when = date.fromisoformat(day["day"])
        x = left + slot * len(bars) + slot * 0.18
        y = float(top + plot_h)
        segments = []
        for key, legend, css in SERIES:
            count = day[key]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            segments.append(Segment(round(y, 2), round(h, 2), css, f"{when:%d.%m.}: {legend}: {count}"))
        bars.append(Bar(round(x, 2), round(slot * 0.64, 2), f"{when:%d.%m.}", total, segments))
    steps = 5 if peak % 5 == 0 else 4
    ticks = [(round(top + plot_h - plot_h * i / steps, 2), peak * i // steps) for i in range(steps + 1)]
    return Chart(width, height, top, bottom, left, bars, ticks, SERIES, empty=not any(totals))
