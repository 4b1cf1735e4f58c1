"""Pure presentation helpers: highlighted text markup, German numbers, the chart's geometry."""

from __future__ import annotations

import pytest

from moderation.ml import Highlight
from moderation.web.present import daily_chart, highlighted, percent


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
