"""Routing thresholds a newsroom can trust: chosen at the site's removal rate, with a statistical margin.

What the site sets (`Policy`):

- `max_leak`: at most this share of the comments published automatically would have been removed by
  the site's moderators (default 2 %);
- `min_reject_precision`: at least this share of the comments rejected automatically would have been
  removed by them (default 95 %);
- `removal_rate` π: the share of all comments the site's moderators remove (default 10 %).

What the thresholds are chosen on (`Evidence`): held-out scores of comments whose moderation outcome
is known, one sample per class: the scores of removed comments and the scores of kept comments
(out-of-fold predictions of the training comments, or site decisions the model never trained on),
each score optionally with a weight (an audit sample drawn at rate r carries weight 1/r).

Method. Only the two per-class score distributions are used, never the mix of the sample: with
F1(t) and F0(t) the shares of removed and kept comments scoring below t, a site removing a share π of
its comments and publishing every comment below t publishes

    a(t) = π·F1(t) + (1-π)·F0(t)        of its comments, with a leak of     L(t) = π·F1(t) / a(t),

and, rejecting every comment at or above t (shares S1 = 1-F1, S0 = 1-F0), rejects
r(t) = π·S1(t) + (1-π)·S0(t) of them with a precision of P(t) = π·S1(t) / r(t).

Each share is a binomial proportion of its class sample, bounded by the exact Clopper–Pearson
interval. L grows with F1 and falls with F0, so an upper bound of F1 together with a lower bound of F0
bounds L from above; each is taken at one-sided level α/2 (α = 1 - confidence), so that both hold at
once with probability at least 1-α (Bonferroni) and the leak bound holds with at least 95 %. The
reject side is bounded the same way (a lower bound of S1 with an upper bound of S0). The approve
threshold t_a is the largest candidate t whose upper leak bound is at most `max_leak`; the reject
threshold t_r the smallest t whose lower precision bound is at least `min_reject_precision`. The
candidates are the sample's own scores (and 1.0, and the limits the caller sets); with no candidate
passing, t_a = 0 (publish nothing automatically) and t_r = 1 (reject nothing by score).

With weighted samples a class's share is the weighted share, and the binomial count and size are
replaced by Kish's effective sample size n_eff = (Σw)² / Σw² (k_eff = share·n_eff), with the
Clopper–Pearson bounds' beta quantiles taken at these non-integer counts. Equal weights give back the
plain counts.

Why it starts small: the bounds are wide on little evidence. With n1 removed comments and none of
them below t, the upper bound of F1 is still about 3.7/n1 at 95 % (Bonferroni-split); at π = 10 % and
a 2 % budget that alone refuses every threshold until there are a few dozen removed comments in the
sample, and automation then grows as the sample grows.

Assumptions, and what they mean for a site:

- The samples are exchangeable with the site's future comments within each class: the scores of the
  comments the site removes look like the removed sample's, and likewise for kept ones. Public
  training data (GermEval) is a stand-in until the site's own decisions replace it: its notion of
  "removed" is the annotators', not the site's netiquette. This is the assumption most likely to
  fail, and the reason the service measures the leak on an audit sample (never assumed).
- The scores are held-out (out-of-fold or from data the model never trained on): in-sample scores
  would make the bounds optimistic.
- π is known. It is the site's setting until its own decisions measure it; a wrong π moves the leak
  by roughly the same factor.
- The bound is per threshold. Choosing the largest passing threshold among many candidates selects
  on the same data, so the 95 % is not a formal guarantee at the chosen threshold. The Bonferroni
  split leaves room for that: in simulations with known score distributions (300 draws each of
  1,100 removed and 2,100 kept, or 300 and 600, at π = 10 % and a 2 % budget) the chosen threshold's
  true leak exceeded the budget in 1.3 % and 1.0 % of the draws, the reject precision never fell
  short; `tests/ml/test_calibration.py` repeats a smaller run.
- Scores of one class are independent draws; comments of one thread or author are not quite, which
  makes the bounds somewhat optimistic.

This module imports neither Flask nor the database; retraining can feed it weighted site samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta

CURVE_LEAKS = (0.01, 0.02, 0.03, 0.05)
DECIMALS = 4


@dataclass(frozen=True)
class Policy:
    """What the site allows: the leak budget, the reject precision, its removal rate; the confidence level."""

    max_leak: float = 0.02
    min_reject_precision: float = 0.95
    removal_rate: float = 0.10
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("max_leak", "min_reject_precision", "removal_rate", "confidence"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value < 1.0) and not (
                    name == "min_reject_precision" and value == 1.0):
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class ClassSample:
    """Held-out scores of one class (sorted), with optional positive weights."""

    scores: np.ndarray
    weights: np.ndarray | None = None
    _cumulative: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=float).ravel()
        weights = None if self.weights is None else np.asarray(self.weights, dtype=float).ravel()
        if scores.size and (not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0):
            raise ValueError("scores must be finite numbers between 0 and 1")
        if weights is not None:
            if weights.shape != scores.shape:
                raise ValueError(f"{scores.size} scores but {weights.size} weights")
            if weights.size and (not np.all(np.isfinite(weights)) or weights.min() <= 0.0):
                raise ValueError("weights must be positive numbers")
        order = np.argsort(scores, kind="stable")
        scores = scores[order]
        weights = None if weights is None else weights[order]
        each = np.ones_like(scores) if weights is None else weights
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "_cumulative", np.concatenate(([0.0], np.cumsum(each))))

    @property
    def size(self) -> int:
        """Number of samples."""
        return int(self.scores.size)

    @property
    def effective_size(self) -> float:
        """Kish's effective sample size (the plain count for equal weights)."""
        if self.weights is None:
            return float(self.scores.size)
        total = float(self.weights.sum())
        return total * total / float(np.square(self.weights).sum()) if total else 0.0

    def share_below(self, thresholds: np.ndarray) -> np.ndarray:
        """Return the (weighted) share of scores below each threshold."""
        total = self._cumulative[-1]
        if not total:
            return np.zeros(len(thresholds))
        return self._cumulative[np.searchsorted(self.scores, thresholds, side="left")] / total


@dataclass(frozen=True)
class Evidence:
    """Held-out scores of removed and of kept comments, and where they come from."""

    removed: ClassSample
    kept: ClassSample
    source: str = ""
    # The site's removal rate as its own (weighted) decisions measure it; None: the policy's expected rate applies.
    measured_removal_rate: float | None = None

    def __post_init__(self) -> None:
        rate = self.measured_removal_rate
        if rate is not None and not (_is_number(rate) and 0.0 < rate < 1.0):
            raise ValueError(f"measured_removal_rate must be a fraction between 0 and 1, got {rate!r}")

    @classmethod
    def from_labels(cls, scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                    weights: Sequence[float] | np.ndarray | None = None, *, source: str = "",
                    measured_removal_rate: float | None = None) -> Evidence:
        """Split scored rows by label (1: removed, 0: kept)."""
        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels, dtype=int)
        if scores.shape != labels.shape:
            raise ValueError(f"{scores.size} scores but {labels.size} labels")
        w = None if weights is None else np.asarray(weights, dtype=float)
        if w is not None and w.shape != scores.shape:
            raise ValueError(f"{scores.size} scores but {w.size} weights")
        return cls(ClassSample(scores[labels == 1], None if w is None else w[labels == 1]),
                   ClassSample(scores[labels == 0], None if w is None else w[labels == 0]), source,
                   measured_removal_rate)

    @property
    def sample_removal_rate(self) -> float | None:
        """The (weighted) share of removed comments in the sample itself: for information only."""
        removed, kept = self.removed._cumulative[-1], self.kept._cumulative[-1]
        return float(removed / (removed + kept)) if removed + kept else None

    def to_metadata(self) -> dict[str, Any]:
        """Return the compact form stored under `calibration` in a model's metadata.json."""
        out: dict[str, Any] = {
            "source": self.source,
            "rows": {"removed": self.removed.size, "kept": self.kept.size},
            "sample_removal_rate": None if self.sample_removal_rate is None else round(self.sample_removal_rate, 4),
            "decimals": DECIMALS,
            **({"measured_removal_rate": round(self.measured_removal_rate, 6)}
               if self.measured_removal_rate is not None else {}),
            "removed": _rounded(self.removed.scores),
            "kept": _rounded(self.kept.scores),
        }
        for name, sample in (("removed", self.removed), ("kept", self.kept)):
            if sample.weights is not None:
                out[f"{name}_weights"] = [round(float(w), 6) for w in sample.weights]
        return out

    @classmethod
    def from_metadata(cls, stored: Mapping[str, Any]) -> Evidence:
        """Read the form `to_metadata` writes; raise ValueError if it is malformed."""
        if not isinstance(stored, Mapping):
            raise ValueError("calibration must be an object")
        samples = []
        for name in ("removed", "kept"):
            scores, weights = stored.get(name), stored.get(f"{name}_weights")
            if not isinstance(scores, list) or not all(_is_number(s) for s in scores):
                raise ValueError(f"calibration {name!r} must be a list of scores")
            if weights is not None and (not isinstance(weights, list) or not all(_is_number(w) for w in weights)):
                raise ValueError(f"calibration {name + '_weights'!r} must be a list of weights")
            samples.append(ClassSample(np.asarray(scores, dtype=float),
                                       None if weights is None else np.asarray(weights, dtype=float)))
        rate = stored.get("measured_removal_rate")
        if rate is not None and not _is_number(rate):
            raise ValueError("calibration 'measured_removal_rate' must be a number")
        return cls(samples[0], samples[1], str(stored.get("source", "")), rate)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rounded(scores: np.ndarray) -> list[float]:
    return [round(float(s), DECIMALS) for s in scores]


def clopper_pearson_upper(k: np.ndarray | float, n: float, alpha: float) -> np.ndarray:
    """One-sided upper (1-alpha) Clopper–Pearson bound of a proportion; k and n may be non-integer."""
    k = np.asarray(k, dtype=float)
    if n <= 0:
        return np.ones_like(k)
    k = np.clip(k, 0.0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = beta.ppf(1.0 - alpha, k + 1.0, np.maximum(n - k, 1e-12))
    return np.where(k >= n, 1.0, upper)


def clopper_pearson_lower(k: np.ndarray | float, n: float, alpha: float) -> np.ndarray:
    """One-sided lower (1-alpha) Clopper–Pearson bound of a proportion; k and n may be non-integer."""
    k = np.asarray(k, dtype=float)
    if n <= 0:
        return np.zeros_like(k)
    k = np.clip(k, 0.0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1.0)
    return np.where(k <= 0, 0.0, lower)


def proportion_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Return the two-sided Clopper–Pearson interval of k successes in n trials (None for n = 0)."""
    if n <= 0:
        return None
    alpha = (1.0 - confidence) / 2
    return float(clopper_pearson_lower(k, n, alpha)), float(clopper_pearson_upper(k, n, alpha))


def _mix(pi: float, removed: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (share of all comments, share of removed ones among them) at removal rate `pi`."""
    share = pi * removed + (1.0 - pi) * kept
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(share > 0, pi * removed / np.where(share > 0, share, 1.0), np.nan)
    return share, ratio


@dataclass(frozen=True)
class CurvePoint:
    """What a leak budget buys on the calibration data."""

    max_leak: float
    approve_threshold: float
    approved_share: float
    automated_share: float


@dataclass(frozen=True)
class Calibration:
    """Thresholds chosen for a policy, and what they are expected to do at the site's removal rate."""

    policy: Policy
    approve_threshold: float
    reject_threshold: float
    approved_share: float
    rejected_share: float
    leak: float | None
    leak_upper: float | None
    reject_precision: float | None
    reject_precision_lower: float | None
    removed_samples: float
    kept_samples: float
    source: str
    curve: tuple[CurvePoint, ...]

    @property
    def automated_share(self) -> float:
        """Share of all comments decided without a person (expected, at the site's removal rate)."""
        return self.approved_share + self.rejected_share

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "approve_threshold": self.approve_threshold, "reject_threshold": self.reject_threshold,
            "max_leak": self.policy.max_leak, "min_reject_precision": self.policy.min_reject_precision,
            "removal_rate": self.policy.removal_rate, "confidence": self.policy.confidence,
            "approved_share": self.approved_share, "rejected_share": self.rejected_share,
            "automated_share": self.automated_share, "leak": self.leak, "leak_upper": self.leak_upper,
            "reject_precision": self.reject_precision, "reject_precision_lower": self.reject_precision_lower,
            "removed_samples": self.removed_samples, "kept_samples": self.kept_samples, "source": self.source,
            "curve": [point.__dict__ for point in self.curve],
        }


@dataclass(frozen=True)
class _Bounds:
    """Per candidate threshold: the shares below it and the policy's bounds, at one removal rate."""

    candidates: np.ndarray
    below_removed: np.ndarray
    below_kept: np.ndarray
    leak_upper: np.ndarray
    precision_lower: np.ndarray


def _bounds(evidence: Evidence, removal_rate: float, confidence: float, limits: tuple[float, ...] = ()) -> _Bounds:
    alpha = (1.0 - confidence) / 2  # split between the two classes' bounds (Bonferroni)
    candidates = np.unique(np.concatenate((evidence.removed.scores, evidence.kept.scores, [1.0], limits)))
    f1 = evidence.removed.share_below(candidates)
    f0 = evidence.kept.share_below(candidates)
    n1, n0 = evidence.removed.effective_size, evidence.kept.effective_size
    upper_f1 = clopper_pearson_upper(f1 * n1, n1, alpha)
    lower_f0 = clopper_pearson_lower(f0 * n0, n0, alpha)
    _, leak_upper = _mix(removal_rate, upper_f1, lower_f0)
    lower_s1 = clopper_pearson_lower((1.0 - f1) * n1, n1, alpha)
    upper_s0 = clopper_pearson_upper((1.0 - f0) * n0, n0, alpha)
    _, precision_lower = _mix(removal_rate, lower_s1, upper_s0)
    return _Bounds(candidates, f1, f0, np.nan_to_num(leak_upper, nan=1.0), np.nan_to_num(precision_lower, nan=0.0))


def _approve_index(bounds: _Bounds, max_leak: float, at_most: float) -> int | None:
    passing = np.flatnonzero((bounds.leak_upper <= max_leak) & (bounds.candidates <= at_most))
    return int(passing[-1]) if passing.size else None


def _reject_index(bounds: _Bounds, min_precision: float, at_least: float) -> int | None:
    passing = np.flatnonzero((bounds.precision_lower >= min_precision) & (bounds.candidates >= at_least))
    return int(passing[0]) if passing.size else None


def calibrate(evidence: Evidence, policy: Policy = Policy(), *,  # noqa: B008
              curve_leaks: Iterable[float] = CURVE_LEAKS, approve_at_most: float = 1.0,
              reject_at_least: float = 0.0) -> Calibration:
    """Choose the approve and reject thresholds for `policy` on `evidence` (see the module docstring).

    `approve_at_most` and `reject_at_least` limit the thresholds (the service passes the model's
    decision threshold: it never publishes by itself what the model takes for offensive).
    """
    pi = policy.removal_rate
    bounds = _bounds(evidence, pi, policy.confidence, (approve_at_most, reject_at_least))
    reject_at = _reject_index(bounds, policy.min_reject_precision, reject_at_least)
    reject = float(bounds.candidates[reject_at]) if reject_at is not None else 1.0
    rejected_removed = 1.0 - float(bounds.below_removed[reject_at]) if reject_at is not None else 0.0
    rejected_kept = 1.0 - float(bounds.below_kept[reject_at]) if reject_at is not None else 0.0

    def approve_for(max_leak: float) -> tuple[int | None, float]:
        # The bands never overlap: what the reject side takes is not published.
        index = _approve_index(bounds, max_leak, min(approve_at_most, reject))
        return index, float(bounds.candidates[index]) if index is not None else 0.0

    approve_at, approve = approve_for(policy.max_leak)
    approved_removed = float(bounds.below_removed[approve_at]) if approve_at is not None else 0.0
    approved_kept = float(bounds.below_kept[approve_at]) if approve_at is not None else 0.0
    approved_share, leak = _mix(pi, np.array([approved_removed]), np.array([approved_kept]))
    rejected_share, precision = _mix(pi, np.array([rejected_removed]), np.array([rejected_kept]))

    curve = []
    for max_leak in curve_leaks:
        index, threshold = approve_for(max_leak)
        share = 0.0 if index is None else float(
            pi * bounds.below_removed[index] + (1 - pi) * bounds.below_kept[index])
        curve.append(CurvePoint(max_leak, threshold, share, share + float(rejected_share[0])))
    return Calibration(
        policy=policy,
        approve_threshold=approve,
        reject_threshold=reject,
        approved_share=float(approved_share[0]),
        rejected_share=float(rejected_share[0]),
        leak=_finite(leak[0]) if approve_at is not None and approved_share[0] > 0 else None,
        leak_upper=float(bounds.leak_upper[approve_at]) if approve_at is not None else None,
        reject_precision=_finite(precision[0]) if reject_at is not None and rejected_share[0] > 0 else None,
        reject_precision_lower=float(bounds.precision_lower[reject_at]) if reject_at is not None else None,
        removed_samples=round(evidence.removed.effective_size, 1),
        kept_samples=round(evidence.kept.effective_size, 1),
        source=evidence.source,
        curve=tuple(curve),
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
