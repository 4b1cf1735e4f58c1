"""The team's German functional test suite (benchmarks/functional/cases.jsonl) and its reader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from moderation.ml.data import DataError
from moderation.ml.functional import EXPECTED_LABEL, SUITE_CATEGORIES, Case, pass_rates, read_cases

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "functional" / "cases.jsonl"
MIN_CASES = 25


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    """Return the suite as shipped in the repository."""
    return read_cases(SUITE)


def test_every_category_has_enough_cases(cases):
    counts = Counter(case.category for case in cases)
    assert set(counts) == set(SUITE_CATEGORIES)
    assert min(counts.values()) >= MIN_CASES, counts


def test_ids_and_texts_are_unique(cases):
    assert len({case.id for case in cases}) == len(cases)
    assert len({case.text.strip().lower() for case in cases}) == len(cases)


@pytest.mark.parametrize("category", [c for c in SUITE_CATEGORIES if EXPECTED_LABEL[c] is not None])
def test_fixed_categories_hold_only_their_label(cases, category):
    labels = {case.label for case in cases if case.category == category}
    assert labels == {EXPECTED_LABEL[category]}


def test_dialect_holds_both_labels_mostly_harmless(cases):
    labels = Counter(case.label for case in cases if case.category == "dialect")
    assert labels[1] >= 5 and labels[0] > 2 * labels[1]


def test_readme_explains_every_category():
    readme = (SUITE.parent / "README.md").read_text(encoding="utf-8")
    for category in SUITE_CATEGORIES:
        assert f"`{category}`" in readme, category


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


GOOD = {"id": "threat-01", "category": "threat", "text": "Ich weiß, wo du wohnst.", "label": 1}


def test_reader_keeps_order_and_optional_note(tmp_path):
    path = _write(tmp_path / "cases.jsonl", [GOOD, "", {"id": "harmless-01", "category": "harmless",
                                                         "text": "Danke!", "label": 0, "note": "Dank"}])
    assert read_cases(path) == [Case("threat-01", "threat", "Ich weiß, wo du wohnst.", 1, None),
                                Case("harmless-01", "harmless", "Danke!", 0, "Dank")]


@pytest.mark.parametrize(("rows", "where", "message"), [
    ([GOOD, "{kaputt"], "cases.jsonl:2", "invalid JSON"),
    ([{**GOOD, "id": ""}], "cases.jsonl:1", "'id'"),
    ([{k: v for k, v in GOOD.items() if k != "text"}], "cases.jsonl:1", "'text'"),
    ([{**GOOD, "text": "  "}], "cases.jsonl:1", "'text'"),
    ([{**GOOD, "category": "drohung"}], "cases.jsonl:1", "category 'drohung'"),
    ([{**GOOD, "label": 2}], "cases.jsonl:1", "label"),
    ([{**GOOD, "label": "1"}], "cases.jsonl:1", "label"),
    ([{**GOOD, "label": 0}], "cases.jsonl:1", "expects label 1"),
    ([GOOD, {**GOOD, "text": "anders"}], "cases.jsonl:2", "id 'threat-01' occurs twice"),
    ([{**GOOD, "note": 3}], "cases.jsonl:1", "'note'"),
    ([["threat-01", "threat"]], "cases.jsonl:1", "object"),
    ([""], "cases.jsonl", "no cases"),
])
def test_reader_refuses_malformed_cases(tmp_path, rows, where, message):
    path = _write(tmp_path / "cases.jsonl", rows)
    with pytest.raises(DataError) as info:
        read_cases(path)
    assert where in str(info.value) and message in str(info.value)


def test_pass_rates_per_category():
    cases = [Case("a", "threat", "x", 1, None), Case("b", "threat", "y", 1, None),
             Case("c", "harmless", "z", 0, None), Case("d", "dialect", "w", 1, None),
             Case("e", "dialect", "v", 0, None)]
    # A case passes when (score >= threshold) == label: at 0.5, b misses and e is wrongly flagged.
    rates = pass_rates(cases, [0.9, 0.2, 0.1, 0.5, 0.7], 0.5)
    assert rates == {"threat": 0.5, "harmless": 1.0, "dialect": 0.5}
    with pytest.raises(ValueError, match="2 scores for 5 cases"):
        pass_rates(cases, [0.1, 0.2], 0.5)
