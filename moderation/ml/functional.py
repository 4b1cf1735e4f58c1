"""The team's German functional test suite: hand-written cases per behaviour, never used for training.

The suite lives in `benchmarks/functional/cases.jsonl` (one JSON object a line: `id`, `category`,
`text`, `label` 1 = should be flagged, 0 = publishable, optional `note`); its README says what each
category means and how labels were decided. A case passes when the model's verdict at its decision
threshold, `score >= threshold`, equals the label; the suite reports the pass rate per category.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moderation.ml.data import DataError, json_lines

# Every category with the one label its cases hold, or None where the cases hold both (dialect:
# mostly harmless regional or colloquial German, some of it abusive, each case labelled on its own).
EXPECTED_LABEL: dict[str, int | None] = {
    "threat": 1,
    "call_to_violence": 1,
    "dehumanisation": 1,
    "slur": 1,
    "insult_present": 1,
    "profanity_untargeted": 0,
    "negated_hate": 0,
    "counter_speech": 0,
    "quoted_hate": 0,
    "criticism_public_figure": 0,
    "dialect": None,
    "disguised_insult": 1,
    "harmless": 0,
}
SUITE_CATEGORIES = tuple(EXPECTED_LABEL)


@dataclass(frozen=True)
class Case:
    """One functional test case."""

    id: str
    category: str
    text: str
    label: int
    note: str | None = None


def _case(row: object, where: str) -> Case:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a case is a JSON object, got {type(row).__name__}")
    for key in ("id", "text"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string")
    category = row.get("category")
    if category not in EXPECTED_LABEL:
        raise DataError(f"{where}: category {category!r} is not one of {', '.join(SUITE_CATEGORIES)}")
    label = row.get("label")
    if label not in (0, 1) or isinstance(label, bool):
        raise DataError(f"{where}: label {label!r} is not the number 0 or 1")
    expected = EXPECTED_LABEL[category]
    if expected is not None and label != expected:
        raise DataError(f"{where}: category {category!r} expects label {expected}, got {label}")
    note = row.get("note")
    if note is not None and not isinstance(note, str):
        raise DataError(f"{where}: 'note' must be a string")
    return Case(row["id"], category, row["text"], label, note)


def read_cases(path: str | Path) -> list[Case]:
    """Read and check a functional suite file, in file order."""
    path = Path(path)
    cases: list[Case] = []
    seen: set[str] = set()
    for row, where, _ in json_lines(path):
        case = _case(row, where)
        if case.id in seen:
            raise DataError(f"{where}: id {case.id!r} occurs twice")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise DataError(f"{path}: no cases")
    return cases


def pass_rates(cases: Sequence[Case], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """Return each category's share of cases whose verdict at `threshold` matches the label."""
    if len(scores) != len(cases):
        raise ValueError(f"{len(scores)} scores for {len(cases)} cases")
    passed: dict[str, list[bool]] = defaultdict(list)
    for case, score in zip(cases, scores, strict=True):
        passed[case.category].append((float(score) >= threshold) == bool(case.label))
    return {category: sum(hits) / len(hits) for category, hits in passed.items()}
