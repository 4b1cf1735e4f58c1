"""The shipped model on a few cases of the team's functional suite, as ordinary tests.

The suite (benchmarks/functional/cases.jsonl) is measured whole by `benchmarks/shift_eval.py --model model`;
here the first three cases of every category, in file order (chosen by position, not by result), check
the verdict of the model in `model/` at its decision threshold: flagged (score >= threshold) when the
case's label is 1, not flagged when it is 0. Cases the shipped model gets wrong are listed in
KNOWN_MISSES and expected to fail (strictly: a model that gets one right makes the test say so, and the
list shrinks). The model card lists the per-category pass rates these come from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation.ml import load_model
from moderation.ml.functional import read_cases

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "model"
CASES = read_cases(ROOT / "benchmarks" / "functional" / "cases.jsonl")
PER_CATEGORY = 3

# Misses of model 2026.12.07-f719801 among the cases below (its scores at threshold 0.5 in brackets).
KNOWN_MISSES = {
    "call_to_violence-02",  # 0.30, though held as a likely threat
    "call_to_violence-03",  # 0.13
    "dehumanisation-01",  # 0.17
    "dehumanisation-02",  # 0.39
    "slur-03",  # 0.48
    "insult_present-03",  # 0.27
    "profanity_untargeted-02",  # 0.66
    "profanity_untargeted-03",  # 0.52
    "negated_hate-01",  # 0.55
    "negated_hate-02",  # 0.53
    "criticism_public_figure-03",  # 0.59
    "disguised_insult-02",  # 0.24
    "disguised_insult-03",  # 0.47
}

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "metadata.json").is_file(), reason="no shipped model in model/")


def _first_cases():
    taken: dict[str, int] = {}
    for case in CASES:
        if taken.get(case.category, 0) < PER_CATEGORY:
            taken[case.category] = taken.get(case.category, 0) + 1
            marks = [pytest.mark.xfail(strict=True, reason="a known miss of the shipped model")] \
                if case.id in KNOWN_MISSES else []
            yield pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def shipped():
    """Return the shipped model, loaded (hash-checked)."""
    return load_model(MODEL_DIR)


def test_known_misses_are_cases_of_this_file():
    assert KNOWN_MISSES <= {case.id for case in CASES}


@pytest.mark.parametrize("case", list(_first_cases()))
def test_the_shipped_model_decides_the_case_as_labelled(shipped, case):
    score = shipped.score(case.text, explain=False)
    assert (score.toxicity >= shipped.decision_threshold) == bool(case.label), round(score.toxicity, 3)


@pytest.mark.parametrize("case", [c for c in CASES if c.category == "threat"][:PER_CATEGORY], ids=lambda c: c.id)
def test_the_first_threats_are_held_as_likely_threats(shipped, case):
    """Routing holds a likely threat whatever its score (reason threat_likely)."""
    score = shipped.score(case.text, explain=False)
    assert score.threat_likely and score.category == "threat"
