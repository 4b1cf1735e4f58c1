"""Learn a site's own moderation from its decisions: the prior model plus a correction fitted on them.

The prior is a model trained on public data (the shipped model, or one `retrain --base` trains): it
knows insults, not the site's netiquette. The site's decisions are the primary signal, but at first
there are only a few hundred of them, too few to train a text classifier from scratch. So the
candidate keeps the prior's features (normalisation, n-grams, encoder: the pipeline up to the
classifier, unchanged) and fits, on the site's decisions alone, a logistic regression

    logit p(x) = a * m(x) + b + w . x

where m(x) is the prior's logit, a and b are (practically) unpenalised and the correction w, one
weight per feature of the prior, has an L2 penalty of inverse strength C: with few decisions w
stays near 0 and the candidate ranks like the prior (a re-scaled), with more it moves towards the
site's norms, word by word. How far the decisions should move the prior depends on the size of the
features (a recipe change alters it) and on how much the site disagrees with the prior, so C is chosen
per run by cross-validation on the decisions themselves (`choose_c`, `C_GRID`); `CORRECTION_C` is the
fallback when there are too few decisions to choose. Because m is linear in x, the result is again
one logistic regression over the same features, coefficients a * prior + w: the artifact has the
prior's shape, serving and its fast path do not change. The prior's own coefficients ride along on the classifier
(`prior_coef_`, `prior_intercept_`, `prior_version_`), so the next retrain corrects the prior again
from all decisions instead of stacking corrections.

Everything here is scikit-learn and numpy: no Flask, no database (`moderation.services.retraining`
reads the decisions and calls in).
"""

from __future__ import annotations

import copy
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from moderation.ml.model import ARTIFACT_FORMAT, file_sha256, write_metadata

# Inverse strength of the correction's L2 penalty when the decisions are too few to choose it
# (`choose_c`), and the value record 11 fixed for NB-scaled features: at 0.1 a correction weight needs
# a feature's evidence from dozens of decisions.
CORRECTION_C = 0.1
# The values `choose_c` compares (decision record 13): a log grid around CORRECTION_C wide enough for
# feature scales that differ by a factor of ten either way.
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# The prior's logit enters multiplied by this, so the penalty on its coefficient a / PRIOR_SCALE is negligible.
PRIOR_SCALE = 10.0
FOLDS = 5
ARTIFACT_NAME = "model.joblib"


@dataclass(frozen=True)
class Prior:
    """The prior's classifier: coefficients over the pipeline's features, and the version they come from."""

    coef: np.ndarray
    intercept: float
    version: str


@dataclass(frozen=True)
class Correction:
    """A fitted correction: logit = a * prior logit + b + w . x."""

    a: float
    b: float
    w: np.ndarray
    C: float


def prior_of(pipeline: Pipeline, version: str) -> Prior:
    """Return the prior of a model: the one it was corrected from, or its own classifier if it never was."""
    clf = pipeline.named_steps["clf"]
    if hasattr(clf, "prior_coef_"):
        return Prior(np.asarray(clf.prior_coef_, dtype=float), float(clf.prior_intercept_), str(clf.prior_version_))
    return Prior(np.asarray(clf.coef_[0], dtype=float), float(clf.intercept_[0]), version)


def features(pipeline: Pipeline, texts: list[str]) -> sparse.csr_matrix:
    """Return what the pipeline's classifier sees of `texts` (every step but the last)."""
    return sparse.csr_matrix(pipeline[:-1].transform(list(texts)))


def prior_logit(prior: Prior, x: sparse.csr_matrix) -> np.ndarray:
    """Return the prior's logit for each row of `x`."""
    return np.asarray(x @ prior.coef).ravel() + prior.intercept


def _design(x: sparse.csr_matrix, logit: np.ndarray) -> sparse.csr_matrix:
    return sparse.hstack([sparse.csr_matrix(np.asarray(logit).reshape(-1, 1) * PRIOR_SCALE), x], format="csr")


def _regression(C: float, *, warm: bool = False) -> LogisticRegression:
    # lbfgs leaves the intercept unpenalised; liblinear would shrink b as well.
    return LogisticRegression(C=C, class_weight="balanced", solver="lbfgs", max_iter=5000, warm_start=warm)


def _correction(model: LogisticRegression, C: float) -> Correction:
    coef = model.coef_[0]
    return Correction(a=float(coef[0]) * PRIOR_SCALE, b=float(model.intercept_[0]), w=np.asarray(coef[1:]), C=C)


def fit_correction(x: sparse.csr_matrix, logit: np.ndarray, labels: np.ndarray, *, C: float = CORRECTION_C,
                   weights: np.ndarray | None = None) -> Correction:
    """Fit a, b and w on the site's decisions (balanced classes, like the prior)."""
    model = _regression(C)
    model.fit(_design(x, logit), np.asarray(labels, dtype=int), sample_weight=weights)
    return _correction(model, C)


def corrected_logit(correction: Correction, x: sparse.csr_matrix, logit: np.ndarray) -> np.ndarray:
    """Return the corrected logit of each row."""
    return correction.a * np.asarray(logit) + correction.b + np.asarray(x @ correction.w).ravel()


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Return 1 / (1 + exp(-z)) without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def cross_fit(x: sparse.csr_matrix, logit: np.ndarray, labels: np.ndarray, groups: list[str], *,
              scored: np.ndarray | None = None, C: float = CORRECTION_C, seed: int = 0,
              folds: int = FOLDS) -> tuple[np.ndarray, int]:
    """Return out-of-fold corrected probabilities and the folds used (grouped, stratified K-fold).

    Each `scored` row (default: all) is scored by a correction fitted without its group's scored rows
    (by row when there are fewer groups than folds); the other rows (no random sample: they train, they
    are not scored) join every fold's training. Rows not scored are NaN.
    """
    _, oof, used = next(cross_fit_path(x, logit, labels, groups, scored=scored, grid=(C,), seed=seed, folds=folds))
    return oof, used


def cross_fit_path(x: sparse.csr_matrix, logit: np.ndarray, labels: np.ndarray, groups: list[str], *,
                   scored: np.ndarray | None = None, grid: tuple[float, ...] = C_GRID, seed: int = 0,
                   folds: int = FOLDS) -> Iterator[tuple[float, np.ndarray, int]]:
    """`cross_fit` for each C of `grid` in turn, on the same folds: yields (C, out-of-fold probabilities, folds used).

    From the strongest penalty to the weakest; each fold's fit starts from its solution at the previous C
    (the optimum is the same, lbfgs gets there in fewer steps). A caller that stops iterating skips the
    remaining, weaker penalties, whose fits are the slowest. Raises ValueError before the first fit when
    the decisions cannot be cross-fitted.
    """
    labels = np.asarray(labels, dtype=int)
    scored = np.ones(len(labels), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    idx, extra = np.flatnonzero(scored), np.flatnonzero(~scored)
    sub_labels, sub_groups = labels[idx], [groups[i] for i in idx]
    if len(set(sub_groups)) < folds:  # a site with a handful of articles: fold by row instead
        sub_groups = [str(i) for i in idx]
    folds = min(folds, len(set(sub_groups)), int(np.bincount(sub_labels, minlength=2).min()))
    if folds < 2:
        raise ValueError("cross-fitting needs at least two groups and two decisions of each class")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = [(np.concatenate([idx[train], extra]), idx[test])
              for train, test in splitter.split(np.zeros(len(idx)), sub_labels, sub_groups)]
    if any(len(set(labels[rows].tolist())) < 2 for rows, _ in splits):
        raise ValueError("a cross-fitting fold lacks one class; more decisions are needed")
    design = _design(x, logit)
    models = [_regression(min(grid), warm=True) for _ in splits]
    for C in sorted(grid):
        oof = np.full(len(labels), np.nan)
        for model, (rows, held) in zip(models, splits, strict=True):
            model.set_params(C=C)
            model.fit(design[rows], labels[rows])
            oof[held] = sigmoid(corrected_logit(_correction(model, C), x[held], logit[held]))
        yield C, oof, folds


def balanced_log_loss(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Return the weighted log-loss with each class's weights scaled to the same total (like the balanced fit)."""
    labels = np.asarray(labels, dtype=int)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1 - 1e-12)
    loss = 0.0
    for c, q in ((1, p), (0, 1 - p)):
        mask = labels == c
        loss += 0.5 * float(np.sum(weights[mask] * -np.log(q[mask])) / np.sum(weights[mask]))
    return loss


@dataclass(frozen=True)
class Choice:
    """How C was chosen: by cross-validation on the decisions, fixed by the caller, or the fallback constant."""

    C: float
    how: str  # "cross-validation", "fixed" or "fallback"
    grid: list[dict[str, Any]]  # per C tried: its held-out figures
    note: str = ""
    oof: np.ndarray | None = None  # the chosen C's out-of-fold probabilities (all rows; NaN where not scored)
    folds: int = 0

    def to_metadata(self) -> dict[str, Any]:
        return {"C": self.C, "chosen_by": self.how, "grid": self.grid, **({"note": self.note} if self.note else {}),
                **({"metric": "out-of-fold log-loss of the usable decisions, weighted by their pooled weights, "
                              "classes balanced; lowest wins"} if self.how == "cross-validation" else {})}


# `choose_c` stops once the figure rose at this many grid points in a row: the weaker penalties after them
# are the slowest fits and, the held-out loss being unimodal in C in every run measured, not chosen.
RISES_TO_STOP = 2


def choose_c(x: sparse.csr_matrix, logit: np.ndarray, labels: np.ndarray, groups: list[str], *,
             scored: np.ndarray | None = None, weights: np.ndarray | None = None, grid: tuple[float, ...] = C_GRID,
             seed: int = 0, folds: int = FOLDS, min_rows: int = 100, min_per_class: int = 20) -> Choice:
    """Choose the correction's C from `grid` by cross-validation on the decisions (decision record 13).

    The figure is the out-of-fold log-loss of the `scored` rows, weighted by `weights` (their
    inverse-propensity weights, aligned with the scored rows), each class's weights scaled to the same
    total. Log-loss, not ROC-AUC: the out-of-fold scores become the routing calibration, so the scores
    themselves matter, not only their order, and ROC-AUC is flat over much of the grid. Balanced, because
    the correction is fitted with balanced classes: the figure estimates the loss the fit minimises,
    without its penalty. The lowest figure wins; a tie goes to the smaller C. The grid is walked from the
    strongest penalty up and left once the figure rose RISES_TO_STOP times in a row. The chosen C's
    out-of-fold scores come with the choice, so the search costs the other C's fits and nothing more.

    With fewer than `min_rows` scored rows or `min_per_class` of a class, or folds that lack a class,
    `CORRECTION_C` is kept and the choice says why.
    """
    labels = np.asarray(labels, dtype=int)
    scored = np.ones(len(labels), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    idx = np.flatnonzero(scored)
    removed = int(labels[idx].sum())
    kept = len(idx) - removed
    if len(idx) < min_rows or min(removed, kept) < min_per_class:
        return Choice(CORRECTION_C, "fallback", [], note=(
            f"too few decisions to choose C ({len(idx)}: {removed} removed, {kept} kept; at least {min_rows} with "
            f"{min_per_class} of each are needed): the fixed {CORRECTION_C} is used"))
    w = None if weights is None else np.asarray(weights, dtype=float)
    figures: list[dict[str, Any]] = []
    best: tuple[float, np.ndarray, int] | None = None
    rises = 0
    try:
        for C, oof, used in cross_fit_path(x, logit, labels, groups, scored=scored, grid=grid, seed=seed,
                                           folds=folds):
            loss = round(balanced_log_loss(labels[idx], oof[idx], w), 5)
            rises = rises + 1 if figures and loss > figures[-1]["log_loss"] else 0
            figures.append({"C": C, "log_loss": loss,
                            "weighted_roc_auc": round(weighted_auc(labels[idx], oof[idx], w), 5)})
            if best is None or loss < min(f["log_loss"] for f in figures[:-1]):
                best = (C, oof, used)
            if rises >= RISES_TO_STOP:
                break
    except ValueError as exc:
        return Choice(CORRECTION_C, "fallback", [], note=f"{exc}: the fixed {CORRECTION_C} is used")
    skipped = [C for C in sorted(grid) if C > figures[-1]["C"]]
    note = (f"stopped after the log-loss rose at {RISES_TO_STOP} grid points in a row; not tried: "
            + ", ".join(f"{C:g}" for C in skipped)) if skipped else ""
    return Choice(best[0], "cross-validation", figures, note=note, oof=best[1], folds=best[2])


def corrected_pipeline(pipeline: Pipeline, prior: Prior, correction: Correction) -> Pipeline:
    """Return the prior's pipeline with its classifier's coefficients replaced by a * prior + w.

    The fitted feature steps are shared with `pipeline`, not copied: only the classifier is new.
    """
    clf = copy.copy(pipeline.named_steps["clf"])
    clf.coef_ = (correction.a * prior.coef + correction.w).reshape(1, -1)
    clf.intercept_ = np.array([correction.a * prior.intercept + correction.b])
    clf.prior_coef_, clf.prior_intercept_, clf.prior_version_ = prior.coef, prior.intercept, prior.version
    return Pipeline([*pipeline.steps[:-1], ("clf", clf)])


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float | None:
    """Return the (weighted) ROC-AUC, or None without both classes."""
    labels = np.asarray(labels, dtype=int)
    if len(set(labels.tolist())) < 2:
        return None
    return float(roc_auc_score(labels, scores, sample_weight=weights))


def write_model(out: str | Path, pipeline: Pipeline, category_head: Any, metadata: dict[str, Any], *,
                threat_head: Any = None) -> dict[str, Any]:
    """Write a model folder (artifact, then metadata with its hash and version); return the metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (ARTIFACT_NAME + ".tmp")
    joblib.dump({"format": ARTIFACT_FORMAT, "pipeline": pipeline, "category_head": category_head,
                 "threat_head": threat_head}, tmp, compress=3)
    os.replace(tmp, out / ARTIFACT_NAME)
    sha = file_sha256(out / ARTIFACT_NAME)
    now = datetime.now(UTC)
    metadata = {
        "version": f"{now:%Y.%m.%d}-{sha[:7]}",
        "created_at": now.isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "artifact": {"file": ARTIFACT_NAME, "sha256": sha, "bytes": (out / ARTIFACT_NAME).stat().st_size,
                     "format": ARTIFACT_FORMAT},
        **metadata,
    }
    write_metadata(out, metadata)
    return metadata
