"""Pure presentation helpers: highlighted text markup, German numbers, the chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from moderation.ml import Highlight
from moderation.services.routing import Thresholds
from moderation.web.present import daily_chart, highlighted, local_time, percent, reason_labels


def hl(start: int, end: int, text: str, weight: float = 0.5) -> Highlight:
    return Highlight(start, end, text, weight)


@pytest.mark.parametrize("text, spans, expected", [
    ("Du Idiot", [hl(3, 8, "Idiot", 0.4)], 'Du <mark title="Gewicht 0,40">Idiot</mark>'),
    ("<b>Idiot</b>", [hl(3, 8, "Idiot")], '&lt;b&gt;<mark title="Gewicht 0,50">Idiot</mark>&lt;/b&gt;'),
    ("a<script>b", [hl(1, 9, "<script>")], 'a<mark title="Gewicht 0,50">&lt;script&gt;</mark>b'),
    ("x & y", [], "x &amp; y"),
    # Overlapping and out-of-range spans are left plain rather than producing broken markup.
    ("abcdef", [hl(0, 3, "abc"), hl(2, 5, "cde"), hl(4, 99, "ef")], '<mark title="Gewicht 0,50">abc</mark>def'),
    ("abc", [hl(2, 2, "")], "abc"),
    ("ab", [hl(1, 2, "b"), hl(0, 1, "a")], '<mark title="Gewicht 0,50">a</mark><mark title="Gewicht 0,50">b</mark>'),
])
def test_highlighted_escapes_every_piece(text, spans, expected):
    assert str(highlighted(text, spans)) == expected


@pytest.mark.parametrize("value, digits, expected", [(None, 0, "–"), (0.1234, 1, "12,3 %"), (1, 0, "100 %")])
def test_percent_is_german(value, digits, expected):
    assert percent(value, digits) == expected


@pytest.mark.parametrize("value, expected", [
    (0.9967, "99,7 %"), (0.08, "8,0 %"), (0.12345, "12,3 %"), (0.5, "50,0 %"),
    # Only a certainty is shown as one: 100 % and 0 % are never the rounding of something else.
    (0.99996, "99,9 %"), (0.9999999, "99,9 %"), (1.0, "100,0 %"), (0.00004, "0,1 %"), (0.0, "0,0 %"),
])
def test_scores_have_one_decimal_and_never_round_to_certainty(value, expected):
    assert percent(value) == expected


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("when, zone, expected", [
    (datetime(2026, 12, 7, 8, 41, tzinfo=UTC), BERLIN, "7. Dez. 2026, 09:41"),
    (datetime(2026, 7, 1, 22, 5, tzinfo=UTC), BERLIN, "2. Juli 2026, 00:05"),  # summer time, next day
    (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), BERLIN, "29. März 2026, 01:59"),
    (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), BERLIN, "29. März 2026, 03:00"),  # the clocks go forward
    (datetime(2026, 9, 15, 12, 0), BERLIN, "15. Sept. 2026, 14:00"),  # naive times are UTC
    (datetime(2026, 1, 2, 3, 4, tzinfo=UTC), ZoneInfo("UTC"), "2. Jan. 2026, 03:04"),
    (None, BERLIN, "–"),
])
def test_times_are_in_the_newsrooms_zone_in_german(when, zone, expected):
    assert local_time(when, zone) == expected


HELD = Thresholds(approve=0.15, reject=0.9, decision=0.5)
OFF = Thresholds(approve=0.0, reject=1.0, decision=0.5)


@pytest.mark.parametrize("codes, toxicity, thresholds, expected", [
    (["toxicity_uncertain"], 0.3, HELD, ["Modell unsicher"]),
    (["toxicity_likely"], 0.7, HELD, ["Wahrscheinlich toxisch"]),
    # Held under an approve threshold of 0 (nothing is published automatically): the model was not unsure.
    (["toxicity_uncertain"], 0.08, OFF, ["Keine automatische Freigabe"]),
    # Held under an older, lower threshold: the threshold in force would have published it.
    (["toxicity_uncertain"], 0.08, HELD, ["Keine automatische Freigabe"]),
    (["premoderation", "toxicity_uncertain"], 0.08, HELD, ["Vorab-Moderation"]),
    (["toxicity_likely"], 0.7, OFF, ["Wahrscheinlich toxisch"]),
    (["suspect_term"], 0.02, HELD, ["Verdächtiger Begriff"]),
    (["reported"], 0.01, OFF, ["Gemeldet"]),
])
def test_score_labels_only_where_the_score_holds_the_comment(codes, toxicity, thresholds, expected):
    assert reason_labels(codes, toxicity, thresholds) == expected


def day(name: str, **counts: int) -> dict:
    return {"day": name, "approved_auto": 0, "rejected_auto": 0, "approved_moderator": 0, "rejected_moderator": 0,
            "pending": 0, **counts}


def test_chart_stacks_segments_proportionally():
    chart = daily_chart([day("2026-05-01", approved_auto=6, rejected_moderator=2, pending=2), day("2026-05-02")])
    first, second = chart.bars
    assert first.label == "01.05." and first.total == 10 and second.segments == []
    heights = [s.height for s in first.segments]
    assert [s.css for s in first.segments] == ["s-approved-auto", "s-rejected-mod", "s-pending"]
    assert heights[0] == pytest.approx(3 * heights[1]) and heights[1] == pytest.approx(heights[2])
    plot = chart.height - chart.top - chart.bottom
    assert sum(heights) == pytest.approx(plot)  # 10 is already a round axis maximum
    assert first.segments[-1].y == pytest.approx(chart.top)
    assert [value for _, value in chart.ticks] == [0, 2, 4, 6, 8, 10]
    assert not chart.empty and daily_chart([day("2026-05-01")]).empty


def test_every_reason_the_routing_gives_has_a_german_label():
    from moderation.services.routing import Rules, Thresholds, route

    everything = Rules(author_banned=True, banned_terms=("x",), suspect_terms=("y",), premoderation=True)
    codes = set()
    for toxicity in (0.1, 0.4, 0.6, 0.9):
        for rules in (Rules(), everything, Rules(premoderation=True, suspect_terms=("y",))):
            codes |= set(route(toxicity, Thresholds(approve=0.3, reject=0.8, decision=0.5), rules).reasons)
    assert codes >= {"toxicity_likely", "toxicity_uncertain", "toxicity_high", "author_banned", "banned_term",
                     "suspect_term", "premoderation"}
    from moderation.web.present import REASONS

    assert codes <= set(REASONS)
