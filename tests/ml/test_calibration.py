"""Routing thresholds from per-class held-out scores at the site's removal rate, with Clopper–Pearson bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import beta

from moderation.ml.calibration import (
    ClassSample,
    Evidence,
    Policy,
    calibrate,
    clopper_pearson_lower,
    clopper_pearson_upper,
    proportion_interval,
)

POLICY = Policy(max_leak=0.02, min_reject_precision=0.95, removal_rate=0.10)


def draw(n_removed: int, n_kept: int, removed=(5, 1.5), kept=(1.5, 5), seed: int = 0) -> Evidence:
    """Held-out scores of removed comments ~ Beta(removed), of kept ones ~ Beta(kept)."""
    rng = np.random.default_rng(seed)
    return Evidence(ClassSample(rng.beta(*removed, n_removed)), ClassSample(rng.beta(*kept, n_kept)))


def true_leak(t: float, pi: float, removed, kept) -> float:
    f1, f0 = beta.cdf(t, *removed), beta.cdf(t, *kept)
    return pi * f1 / (pi * f1 + (1 - pi) * f0)


def true_precision(t: float, pi: float, removed, kept) -> float:
    s1, s0 = beta.sf(t, *removed), beta.sf(t, *kept)
    return pi * s1 / (pi * s1 + (1 - pi) * s0)


def bounded_leak(evidence: Evidence, t: float, pi: float, confidence: float = 0.95) -> float:
    """The upper leak bound at `t`, recomputed by hand from the counts."""
    alpha = (1 - confidence) / 2
    k1, n1 = int(np.sum(evidence.removed.scores < t)), evidence.removed.size
    k0, n0 = int(np.sum(evidence.kept.scores < t)), evidence.kept.size
    upper_f1 = 1.0 if k1 == n1 else beta.ppf(1 - alpha, k1 + 1, n1 - k1)
    lower_f0 = 0.0 if k0 == 0 else beta.ppf(alpha, k0, n0 - k0 + 1)
    return pi * upper_f1 / (pi * upper_f1 + (1 - pi) * lower_f0) if lower_f0 or upper_f1 else 1.0


# --- Clopper–Pearson ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.3085), (5, 10, 0.1871, 0.8129), (10, 10, 0.6915, 1.0), (1, 100, 0.00025, 0.05446),
])
def test_two_sided_interval_matches_published_values(k, n, low, high):
    interval = proportion_interval(k, n)
    assert interval == pytest.approx((low, high), abs=1e-4)


def test_interval_of_nothing_is_none():
    assert proportion_interval(0, 0) is None


def test_one_sided_bounds_at_the_edges():
    # No successes in n: the upper bound solves (1-p)^n = alpha.
    assert float(clopper_pearson_upper(0, 50, 0.05)) == pytest.approx(1 - 0.05 ** (1 / 50))
    assert float(clopper_pearson_lower(0, 50, 0.05)) == 0.0
    assert float(clopper_pearson_upper(50, 50, 0.05)) == 1.0
    assert float(clopper_pearson_lower(50, 50, 0.05)) == pytest.approx(0.05 ** (1 / 50))


# --- threshold choice -----------------------------------------------------------------------------------------------

def test_well_separated_scores_automate_most_within_the_bound():
    evidence = draw(1000, 2000)
    chosen = calibrate(evidence, POLICY)
    assert chosen.automated_share > 0.8
    assert 0 < chosen.approve_threshold <= chosen.reject_threshold < 1
    # The bound at the chosen threshold meets the budget, and it is the largest candidate that does.
    assert chosen.leak_upper <= POLICY.max_leak
    assert bounded_leak(evidence, chosen.approve_threshold, 0.10) == pytest.approx(chosen.leak_upper)
    above = np.unique(np.concatenate((evidence.removed.scores, evidence.kept.scores)))
    above = above[above > chosen.approve_threshold]
    assert chosen.approve_threshold == chosen.reject_threshold or \
        bounded_leak(evidence, above[0], 0.10) > POLICY.max_leak
    assert chosen.reject_precision_lower >= POLICY.min_reject_precision
    # Point estimates sit inside their bounds.
    assert chosen.leak <= chosen.leak_upper and chosen.reject_precision >= chosen.reject_precision_lower


def test_overlapping_scores_automate_less_than_separated_ones():
    separated = calibrate(draw(1000, 2000), POLICY)
    overlapping = calibrate(draw(1000, 2000, removed=(3, 2), kept=(2, 3)), POLICY)
    assert overlapping.automated_share < separated.automated_share
    assert overlapping.approve_threshold < separated.approve_threshold


@pytest.mark.parametrize(("n_removed", "n_kept"), [(0, 0), (3, 5), (10, 20), (15, 200)])
def test_too_little_evidence_automates_nothing(n_removed, n_kept):
    chosen = calibrate(draw(n_removed, n_kept), POLICY)
    assert (chosen.approve_threshold, chosen.reject_threshold) == (0.0, 1.0)
    assert chosen.automated_share == 0.0 and chosen.leak is None and chosen.leak_upper is None


def test_automation_grows_with_evidence():
    shares = [calibrate(draw(n, 2 * n, removed=(4, 2), kept=(2, 4)), POLICY).automated_share
              for n in (20, 100, 500, 2500)]
    assert shares[0] == 0.0
    assert shares == sorted(shares) and shares[-1] > shares[1]


def test_identical_distributions_have_no_valid_threshold():
    chosen = calibrate(draw(3000, 3000, removed=(2, 2), kept=(2, 2)), POLICY)
    assert (chosen.approve_threshold, chosen.reject_threshold, chosen.automated_share) == (0.0, 1.0, 0.0)


def test_a_lower_site_removal_rate_publishes_more_and_rejects_less():
    evidence = draw(1000, 2000, removed=(6, 1.5), kept=(1.5, 6))
    rare = calibrate(evidence, Policy(removal_rate=0.05))
    usual = calibrate(evidence, Policy(removal_rate=0.10))
    frequent = calibrate(evidence, Policy(removal_rate=0.35))  # the training file's own mix
    assert rare.approve_threshold > usual.approve_threshold > frequent.approve_threshold
    assert rare.reject_threshold >= usual.reject_threshold >= frequent.reject_threshold
    assert rare.reject_threshold > frequent.reject_threshold


def test_thresholds_do_not_depend_on_the_class_mix_of_the_sample():
    """Only the per-class distributions count: more kept comments in the sample change the bound's width, not the
    estimate the thresholds aim at (the same comments, each counted twice, give the same shares)."""
    evidence = draw(1000, 2000)
    doubled_kept = Evidence(evidence.removed, ClassSample(np.repeat(evidence.kept.scores, 2),
                                                          np.full(2 * evidence.kept.size, 0.5)))
    assert doubled_kept.kept.effective_size == pytest.approx(2 * evidence.kept.size)
    np.testing.assert_allclose(doubled_kept.kept.share_below(np.array([0.2, 0.5])),
                               evidence.kept.share_below(np.array([0.2, 0.5])))


def test_equal_weights_change_nothing():
    evidence = draw(500, 1000)
    weighted = Evidence(ClassSample(evidence.removed.scores, np.full(500, 7.0)),
                        ClassSample(evidence.kept.scores, np.full(1000, 7.0)))
    assert calibrate(weighted, POLICY) == calibrate(evidence, POLICY)


def test_uneven_weights_shrink_the_effective_sample_and_widen_the_bound():
    """Audit-sample weights (1/rate) count a few comments many times: Kish's n_eff is what the bounds see."""
    evidence = draw(400, 800)
    weights = np.where(np.arange(800) % 4 == 0, 20.0, 1.0)
    kish = weights.sum() ** 2 / np.square(weights).sum()
    weighted = Evidence(evidence.removed, ClassSample(evidence.kept.scores, weights))
    assert weighted.kept.effective_size == pytest.approx(kish) and kish < 800
    t = np.array([0.3])
    expected_share = weights[np.sort(evidence.kept.scores) < 0.3].sum() / weights.sum()
    assert weighted.kept.share_below(t)[0] == pytest.approx(expected_share)
    # With the same shares but fewer effective samples, the bound can only be wider.
    reweighted = ClassSample(np.sort(evidence.kept.scores), np.ones(800))
    plain = calibrate(Evidence(evidence.removed, reweighted), POLICY)
    assert calibrate(weighted, POLICY).kept_samples == pytest.approx(kish, abs=0.1)
    assert plain.kept_samples == 800


def test_weighted_removed_comments_move_the_threshold():
    """Weighting up the removed comments with low scores (e.g. an audit sample's leaks) lowers the approve threshold."""
    evidence = draw(1000, 2000, removed=(4, 2), kept=(2, 4))
    weights = np.where(evidence.removed.scores < 0.3, 3.0, 1.0)
    heavier = Evidence(ClassSample(evidence.removed.scores, weights), evidence.kept)
    assert calibrate(heavier, POLICY).approve_threshold < calibrate(evidence, POLICY).approve_threshold


def test_the_curve_grows_with_the_budget_and_matches_the_policy_point():
    evidence = draw(1000, 2000, removed=(4, 2), kept=(2, 4))
    chosen = calibrate(evidence, POLICY)
    assert [p.max_leak for p in chosen.curve] == [0.01, 0.02, 0.03, 0.05]
    shares = [p.automated_share for p in chosen.curve]
    assert shares == sorted(shares) and shares[-1] > shares[0]
    at_two = chosen.curve[1]
    assert at_two.approve_threshold == chosen.approve_threshold
    assert at_two.automated_share == pytest.approx(chosen.automated_share)


def test_limits_keep_the_band_around_the_decision_threshold():
    evidence = draw(1000, 2000)
    free = calibrate(evidence, Policy(removal_rate=0.01, max_leak=0.05))
    limited = calibrate(evidence, Policy(removal_rate=0.01, max_leak=0.05), approve_at_most=0.4, reject_at_least=0.6)
    assert free.approve_threshold > 0.4
    assert limited.approve_threshold <= 0.4 and limited.reject_threshold >= 0.6


def test_chosen_thresholds_keep_their_promise_on_known_distributions():
    """Simulation: how often does the chosen threshold's TRUE leak exceed the budget? At 95 % per threshold at
    most about 5 % of draws should; the Bonferroni split keeps it near 1 % (see the module docstring)."""
    removed, kept = (4, 2), (2, 5)
    leaks, misses = 0, 0
    for seed in range(100):
        chosen = calibrate(draw(300, 600, removed=removed, kept=kept, seed=seed), POLICY)
        assert chosen.approve_threshold <= chosen.reject_threshold
        assert chosen.approve_threshold == 0 or chosen.leak_upper <= POLICY.max_leak
        assert chosen.reject_threshold == 1 or chosen.reject_precision_lower >= POLICY.min_reject_precision
        if chosen.approve_threshold > 0 and true_leak(chosen.approve_threshold, 0.10, removed, kept) > 0.02:
            leaks += 1
        if chosen.reject_threshold < 1 and true_precision(chosen.reject_threshold, 0.10, removed, kept) < 0.95:
            misses += 1
    assert leaks <= 10 and misses <= 10


# --- storage and validation -----------------------------------------------------------------------------------------

def test_metadata_round_trip_keeps_sorted_rounded_scores_and_weights():
    evidence = Evidence.from_labels([0.91234567, 0.1, 0.52, 0.03], [1, 0, 1, 0], [2.0, 1.0, 1.0, 3.0], source="test")
    stored = evidence.to_metadata()
    assert stored["removed"] == [0.52, 0.9123] and stored["kept"] == [0.03, 0.1]
    assert stored["removed_weights"] == [1.0, 2.0] and stored["kept_weights"] == [3.0, 1.0]
    assert stored["rows"] == {"removed": 2, "kept": 2} and stored["sample_removal_rate"] == pytest.approx(3 / 7, 1e-3)
    back = Evidence.from_metadata(stored)
    assert back.source == "test"
    np.testing.assert_allclose(back.removed.scores, [0.52, 0.9123])
    np.testing.assert_allclose(back.kept.weights, [3.0, 1.0])


@pytest.mark.parametrize("stored", [
    [], {"kept": [0.1]}, {"removed": "0.1", "kept": [0.2]}, {"removed": [0.1, "x"], "kept": [0.2]},
    {"removed": [1.5], "kept": [0.2]}, {"removed": [0.1], "kept": [0.2], "kept_weights": [0.0]},
    {"removed": [0.1], "kept": [0.2], "removed_weights": [1.0, 2.0]}, {"removed": [True], "kept": [0.2]},
])
def test_malformed_calibration_is_refused(stored):
    with pytest.raises(ValueError):
        Evidence.from_metadata(stored)


@pytest.mark.parametrize("changes", [
    {"max_leak": 0.0}, {"max_leak": 1.0}, {"min_reject_precision": 0.0}, {"min_reject_precision": 1.2},
    {"removal_rate": 0.0}, {"removal_rate": 1.0}, {"confidence": 1.0}, {"max_leak": float("nan")},
])
def test_policy_refuses_values_out_of_range(changes):
    with pytest.raises(ValueError):
        Policy(**changes)


@pytest.mark.parametrize("rate", [0.0731, None])
def test_the_measured_removal_rate_travels_with_the_calibration(rate):
    evidence = Evidence.from_labels([0.1, 0.2, 0.9], [0, 0, 1], [1.0, 50.0, 1.0], measured_removal_rate=rate)
    stored = evidence.to_metadata()
    assert ("measured_removal_rate" in stored) is (rate is not None)
    assert Evidence.from_metadata(json.loads(json.dumps(stored))).measured_removal_rate == rate


@pytest.mark.parametrize("rate", [0, 1, -0.1, 1.5, "0.1", True])
def test_a_measured_removal_rate_outside_0_and_1_is_refused(rate):
    stored = Evidence.from_labels([0.1, 0.9], [0, 1]).to_metadata()
    with pytest.raises(ValueError, match="measured_removal_rate"):
        Evidence.from_metadata({**stored, "measured_removal_rate": rate})
