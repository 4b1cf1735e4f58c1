"""Learn a site's own moderation from its decisions: the prior model plus a correction fitted on them.

The prior is a model trained on public data (the shipped model, or one `retrain --base` trains): it
knows insults, not the site's netiquette. The site's decisions are the primary signal, but at first
there are only a few hundred of them, too few to train a text classifier from scratch. So the
candidate keeps the prior's features (normalisation, n-grams, encoder: the pipeline up to the
classifier, unchanged) and fits, on the site's decisions alone, a logistic regression

    logit p(x) = a * m(x) + b + w . x

where m(x) is the prior's logit, a and b are (practically) unpenalised and the correction w, one
weight per feature of the prior, has a strong L2 penalty (`CORRECTION_C`): with few decisions w
stays near 0 and the candidate ranks like the prior (a re-scaled), with more it moves towards the
site's norms, word by word. Because m is linear in x, the result is again one logistic regression
over the same features, coefficients a * prior + w: the artifact has the prior's shape, serving and
its fast path do not change. The prior's own coefficients ride along on the classifier
(`prior_coef_`, `prior_intercept_`, `prior_version_`), so the next retrain corrects the prior again
from all decisions instead of stacking corrections.

Everything here is scikit-learn and numpy: no Flask, no database (`moderation.services.retraining`
reads the decisions and calls in).
"""

from __future__ import annotations

import copy
import os
import platform
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

# Inverse strength of the correction's L2 penalty. Chosen before the replay comparison on how far a
# few hundred decisions should move the prior: at 0.1 a correction weight needs a feature's evidence
# from dozens of decisions; see benchmarks/replay_site.py for what it buys.
CORRECTION_C = 0.1
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


def fit_correction(x: sparse.csr_matrix, logit: np.ndarray, labels: np.ndarray, *, C: float = CORRECTION_C,
                   weights: np.ndarray | None = None) -> Correction:
    """Fit a, b and w on the site's decisions (balanced classes, like the prior)."""
    design = sparse.hstack([sparse.csr_matrix(np.asarray(logit).reshape(-1, 1) * PRIOR_SCALE), x], format="csr")
    # lbfgs leaves the intercept unpenalised; liblinear would shrink b as well.
    model = LogisticRegression(C=C, class_weight="balanced", solver="lbfgs", max_iter=5000)
    model.fit(design, np.asarray(labels, dtype=int), sample_weight=weights)
    coef = model.coef_[0]
    return Correction(a=float(coef[0]) * PRIOR_SCALE, b=float(model.intercept_[0]), w=np.asarray(coef[1:]), C=C)


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
    labels = np.asarray(labels, dtype=int)
    scored = np.ones(len(labels), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    idx, extra = np.flatnonzero(scored), np.flatnonzero(~scored)
    sub_labels, sub_groups = labels[idx], [groups[i] for i in idx]
    if len(set(sub_groups)) < folds:  # a site with a handful of articles: fold by row instead
        sub_groups = [str(i) for i in idx]
    folds = min(folds, len(set(sub_groups)), int(np.bincount(sub_labels, minlength=2).min()))
    if folds < 2:
        raise ValueError("cross-fitting needs at least two groups and two decisions of each class")
    oof = np.full(len(labels), np.nan)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(idx)), sub_labels, sub_groups):
        rows, held = np.concatenate([idx[train], extra]), idx[test]
        if len(set(labels[rows].tolist())) < 2:
            raise ValueError("a cross-fitting fold lacks one class; more decisions are needed")
        correction = fit_correction(x[rows], logit[rows], labels[rows], C=C)
        oof[held] = sigmoid(corrected_logit(correction, x[held], logit[held]))
    return oof, folds


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
