"""Figures of the shift evaluation: ROC-AUC, the auto-approvable share, the primary figure and its noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from moderation.ml.shift import approvable_share, bootstrap_primary, cell_metrics, primary_figure, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# Four harmless comments at 0.1-0.4, two toxic at 0.15 and 0.5. At a 10% toxic rate, publishing below 0.15
# publishes 0.9 * 1/4 = 0.225 of comments, none toxic; below 0.5 it publishes 0.9 + 0.1 * 1/2 = 0.95, of which
# 0.05 / 0.95 = 5.3% are toxic; below 0.3, 0.45 + 0.05 = 0.5 with 10% toxic; everything, 10% toxic.
LABELS = [0, 0, 0, 0, 1, 1]
SCORES = [0.1, 0.2, 0.3, 0.4, 0.15, 0.5]


@pytest.mark.parametrize(("max_leak", "toxic_rate", "expected"), [
    (0.02, 0.10, 0.225),
    (0.06, 0.10, 0.95),
    (0.20, 0.10, 1.0),
    (0.02, 0.0, 1.0),     # nothing toxic: everything can be published
    (0.0, 0.10, 0.225),   # no leak at all: only below the lowest toxic score
])
def test_approvable_share_worked_out_by_hand(max_leak, toxic_rate, expected):
    assert approvable_share(LABELS, SCORES, toxic_rate=toxic_rate, max_leak=max_leak) == pytest.approx(expected)


def test_approvable_share_is_zero_when_the_lowest_score_is_toxic():
    assert approvable_share([1, 0, 0], [0.1, 0.5, 0.6]) == 0.0


def test_approvable_share_does_not_depend_on_the_file_base_rate():
    # The same per-class score distributions at 50% and at 10% toxic give the same share: it is re-weighted.
    labels, scores = np.array(LABELS), np.array(SCORES)
    repeated = np.concatenate([np.flatnonzero(labels == 0)] + [np.flatnonzero(labels == 1)] * 9)
    assert approvable_share(labels[repeated], scores[repeated]) == pytest.approx(approvable_share(labels, scores))


def test_cell_metrics():
    got = cell_metrics(LABELS, SCORES, 0.45)
    # At 0.45: the toxic 0.5 flagged, the toxic 0.15 missed, no harmless flagged.
    # Precision (4/5 + 1/1) / 2 = 0.9, recall (4/4 + 1/2) / 2 = 0.75, F1 = 2 * 0.9 * 0.75 / 1.65.
    assert got["macro_f1"] == pytest.approx(2 * 0.9 * 0.75 / 1.65)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(LABELS, SCORES))
    assert got["approvable"] == pytest.approx(0.225)
    assert got["rows"] == 6 and got["toxic"] == 2


def test_primary_figure_halves_auc_and_pass_rate():
    assert primary_figure([0.8, 0.7, 0.9, 0.6], {"a": 1.0, "b": 0.5}) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        primary_figure([], {"a": 1.0})


def _noise_inputs(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    good = labels + rng.normal(0, 0.8, rows)
    other = labels + rng.normal(0, 0.8, rows)
    cases = ["threat"] * 30 + ["harmless"] * 30
    case_labels = np.array([1] * 30 + [0] * 30)
    suite = {"a": rng.random(60), "b": rng.random(60)}
    return {"x": labels}, {"a": {"x": good}, "b": {"x": other}}, cases, case_labels, suite


def test_bootstrap_is_paired_reproducible_and_shrinks_with_rows():
    labels, cells, cases, case_labels, suite = _noise_inputs(400)
    first = bootstrap_primary(labels, cells, cases, case_labels, suite, 0.5, replicates=200, seed=3)
    again = bootstrap_primary(labels, cells, cases, case_labels, suite, 0.5, replicates=200, seed=3)
    assert set(first) == {"a", "b"} and first["a"].shape == (200,)
    np.testing.assert_array_equal(first["a"], again["a"])
    halves = bootstrap_primary(labels, cells, cases, case_labels, suite, 0.5, replicates=200, seed=3, halves=True)
    assert halves["a"].shape == (200, 2)
    np.testing.assert_allclose(halves["a"].sum(axis=1), first["a"])
    assert 25 <= halves["a"][:, 0].min() <= halves["a"][:, 0].max() <= 50  # 50 x AUC, above chance here
    assert first["a"].std() > 0
    # A recipe compared with itself on the same resamples differs by exactly nothing.
    same = bootstrap_primary(labels, {"a": cells["a"], "c": cells["a"]}, cases, case_labels,
                             {"a": suite["a"], "c": suite["a"]}, 0.5, replicates=50, seed=1)
    np.testing.assert_array_equal(same["a"], same["c"])
    big = bootstrap_primary(*_noise_inputs(4000)[:2], cases, case_labels, {"a": np.full(60, 0.5),
                            "b": np.full(60, 0.5)}, 0.5, replicates=200, seed=3)
    small = bootstrap_primary(labels, cells, cases, case_labels, {"a": np.full(60, 0.5), "b": np.full(60, 0.5)},
                              0.5, replicates=200, seed=3)
    assert big["a"].std() < small["a"].std()


def test_bootstrap_averages_seeds():
    labels, cells, cases, case_labels, suite = _noise_inputs(300)
    two = {"a": {"x": np.stack([cells["a"]["x"], cells["a"]["x"]])}}
    one = bootstrap_primary(labels, {"a": cells["a"]}, cases, case_labels, {"a": suite["a"]}, 0.5,
                            replicates=20, seed=0)
    both = bootstrap_primary(labels, two, cases, case_labels, {"a": np.stack([suite["a"], suite["a"]])}, 0.5,
                             replicates=20, seed=0)
    np.testing.assert_allclose(one["a"], both["a"])
