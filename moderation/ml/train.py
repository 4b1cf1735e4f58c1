"""Fit the pipeline, validate it with grouped cross-validation and write a model folder."""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from moderation.ml.calibration import Evidence, Policy, calibrate
from moderation.ml.encoder import distilled
from moderation.ml.metrics import best_macro_f1_threshold, classification_metrics
from moderation.ml.model import ARTIFACT_FORMAT, file_sha256, write_metadata
from moderation.ml.pipeline import (
    DEFAULT_PARAMS,
    SERVED_DOMAIN,
    DomainAdaptedLogisticRegression,
    build_category_head,
    build_pipeline,
    encoder_part,
    served_rows,
    strip_for_storage,
    text_parts,
)
from moderation.ml.progress import Progress, silent
from moderation.ml.threat import MIN_THREAT_ROWS, fit_threat_head

ARTIFACT_NAME = "model.joblib"
NOT_CALIBRATED = (f"none: no {SERVED_DOMAIN} rows in the training data; nothing is decided automatically until "
                  "retrain calibrates the model on the site's decisions")
N_SPLITS = 5
SMALL_DATA_ROWS = 1000
FALLBACK_THRESHOLDS = {"decision": 0.5, "approve": 0.25, "reject": 0.75}
# The classifier trains with balanced class weights, so 0.5 is its balanced-error point. A threshold
# tuned on the training rows' out-of-fold predictions did worse on unseen folds: nested grouped CV on
# GermEval 2018 (threshold chosen on inner folds, 3 seeds) gave 77.88 macro-F1 against 78.25 at 0.5.
DECISION_THRESHOLD = 0.5


def has_served_rows(domains, labels) -> bool:
    """Whether the rows of the served domain hold both classes: what routing thresholds can be calibrated on."""
    served = np.asarray(domains) == SERVED_DOMAIN
    return len(set(np.asarray(labels)[served].tolist())) == 2


def resolve_params(n_rows: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the hyper-parameters to use, relaxing document-frequency cuts on tiny data."""
    resolved = {**DEFAULT_PARAMS, **(params or {})}
    if n_rows < SMALL_DATA_ROWS:
        resolved.update(min_df=1, max_df=1.0)
    return resolved


def fit_pipeline(pipeline: Pipeline, texts: list[str], labels, domains: list[str] | None = None) -> Pipeline:
    """Fit `pipeline`, telling a domain-adapted classifier each row's domain."""
    if domains is not None and isinstance(pipeline.named_steps["clf"], DomainAdaptedLogisticRegression):
        return pipeline.fit(texts, labels, clf__domain=list(domains))
    return pipeline.fit(texts, labels)


def _fit_fold(pipeline, texts, labels, domains, train_idx, test_idx):
    model = fit_pipeline(clone(pipeline), [texts[i] for i in train_idx], labels[train_idx],
                         None if domains is None else [domains[i] for i in train_idx])
    return test_idx, model.predict_proba([texts[i] for i in test_idx])[:, 1]


def _numbered(number: int, func: Callable, *args) -> tuple[int, Any]:
    return number, func(*args)


def _distil_in_worker() -> None:
    distilled()  # cached in the worker process for the fits that follow; nothing to send back


def _run_jobs(jobs: list[tuple[str, Callable, tuple]], n_jobs: int, say: Progress) -> list[Any]:
    """Run (phase, function, arguments) jobs in a worker pool; return their results in job order.

    Each finished job is reported as a step of its phase; a phase starts (at 0) when the one before it
    is complete or its own first job finishes, whichever comes first.
    """
    phases = list(dict.fromkeys(phase for phase, _, _ in jobs))
    totals = Counter(phase for phase, _, _ in jobs)
    done: Counter[str] = Counter()
    started: set[str] = set()

    def start(phase: str) -> None:
        if phase not in started:
            started.add(phase)
            say(phase, 0, totals[phase])

    start(phases[0])
    results: list[Any] = [None] * len(jobs)
    for number, result in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_numbered)(number, func, *args) for number, (_, func, args) in enumerate(jobs)):
        phase = jobs[number][0]
        start(phase)
        done[phase] += 1
        say(phase, done[phase], totals[phase])
        position = phases.index(phase)
        if done[phase] == totals[phase] and position + 1 < len(phases):
            start(phases[position + 1])
        results[number] = result
    return results


def cross_fit(texts: list[str], labels: Sequence[int] | np.ndarray, groups: list[str], params: dict[str, Any],
              *, seed: int = 0, n_splits: int = N_SPLITS, n_jobs: int = 2, domains: list[str] | None = None,
              final: bool = True, progress: Progress | None = None,
              ) -> tuple[np.ndarray | None, int, Pipeline | None]:
    """Return (out-of-fold probabilities or None, folds used, pipeline fitted on all rows or None).

    Stratified grouped K-fold CV; with `final`, the fit on all rows runs in the same worker pool as the
    folds, beside them instead of after them: it goes first, as the longest job, and the folds fill in
    around it. Every row is scored as the served domain (see `DomainAdaptedLogisticRegression`).
    `progress` hears of each finished fit, and of the sentence encoder's distillation.
    """
    say = progress or silent
    labels = np.asarray(labels, dtype=int)
    folds = min(n_splits, len(set(groups)), int(np.bincount(labels, minlength=2).min()))
    pipeline = build_pipeline(params, seed=seed)
    splits = []
    if folds >= 2:
        splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
                      .split(texts, labels, groups))
    phase = (f"fitting the final model and {len(splits)} folds" if final and splits
             else "fitting the final model" if final else f"fitting {len(splits)} folds")
    jobs = [(phase, fit_pipeline, (clone(pipeline), texts, labels, domains))] if final else []
    jobs += [(phase, _fit_fold, (pipeline, texts, labels, domains, train_idx, test_idx))
             for train_idx, test_idx in splits]
    if len(texts) < SMALL_DATA_ROWS or len(jobs) < 2:
        n_jobs = 1  # worker start-up would cost more than the fits
    workers = min(effective_n_jobs(n_jobs), len(jobs))
    if encoder_part(pipeline) is not None:
        if workers == 1:
            distilled(say)  # here, reported piece by piece; the fits below find it done
        else:
            # Every worker process distils the encoder at its first fit: as a first job of its own, one
            # per worker, it shows as a phase instead of making the first fits look slow.
            jobs[:0] = [("distilling the sentence encoder in each worker", _distil_in_worker, ())] * workers
    results = _run_jobs(jobs, n_jobs, say)
    results = [result for (job_phase, _, _), result in zip(jobs, results, strict=True) if job_phase == phase]
    fitted = results.pop(0) if final else None
    if not splits:
        return None, folds, fitted
    oof = np.full(len(texts), np.nan)
    for test_idx, proba in results:
        oof[test_idx] = proba
    return oof, folds, fitted


def out_of_fold_scores(texts: list[str], labels, groups: list[str], params: dict[str, Any],
                       *, seed: int = 0, n_splits: int = N_SPLITS, n_jobs: int = 2,
                       domains: list[str] | None = None, progress: Progress | None = None):
    """Return (out-of-fold probabilities, folds used) from stratified grouped K-fold CV (see `cross_fit`)."""
    oof, folds, _ = cross_fit(texts, labels, groups, params, seed=seed, n_splits=n_splits, n_jobs=n_jobs,
                              domains=domains, final=False, progress=progress)
    return oof, folds


def calibration_evidence(labels: np.ndarray, oof: np.ndarray, served: np.ndarray, *, folds: int, seed: int,
                         sources: list[dict] | None) -> Evidence:
    """Return the served rows' out-of-fold scores per class: what routing thresholds are calibrated on."""
    files = ", ".join(str(source.get("path")) for source in sources or []) or "the training rows"
    source = (f"out-of-fold scores (stratified grouped {folds}-fold cross-validation, seed {seed}) "
              f"of the {SERVED_DOMAIN} rows of {files}")
    return Evidence.from_labels(oof[served], labels[served], source=source)


def default_routing(evidence: Evidence, decision: float) -> dict[str, Any]:
    """Return the routing thresholds of the default policy on `evidence`, as metadata.json records them."""
    policy = Policy()
    chosen = calibrate(evidence, policy, approve_at_most=decision, reject_at_least=decision)
    return {
        "approve_threshold": chosen.approve_threshold,
        "reject_threshold": chosen.reject_threshold,
        "source": "calibration at the default policy (the service recomputes them for the site's policy)",
        "max_leak": policy.max_leak, "min_reject_precision": policy.min_reject_precision,
        "removal_rate": policy.removal_rate, "confidence": policy.confidence,
        "expected": {key: chosen.as_dict()[key] for key in (
            "approved_share", "rejected_share", "automated_share", "leak", "leak_upper", "reject_precision",
            "reject_precision_lower")},
    }


def _check_inputs(texts, labels, categories, groups, domains, files) -> None:
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    for name, values in (("categories", categories), ("groups", groups), ("domains", domains), ("files", files)):
        if values is not None and len(values) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(values)} {name}")
    if set(labels) != {0, 1}:
        raise ValueError("labels must be 0 and 1, and both must occur")


def _fit_category_head(features, labels, categories, seed):
    rows = [i for i, (y, c) in enumerate(zip(labels, categories, strict=True)) if y == 1 and c is not None]
    counts = Counter(categories[i] for i in rows)
    if len(counts) < 2:
        return None, dict(counts)
    head = build_category_head(seed=seed).fit(features[rows], [categories[i] for i in rows])
    return head, dict(counts)


def train_and_save(
    texts: list[str],
    labels: list[int],
    out_dir: str | Path,
    *,
    categories: list[str | None] | None = None,
    groups: list[str] | None = None,
    domains: list[str] | None = None,
    files: list[str] | None = None,
    seed: int = 0,
    sources: list[dict] | None = None,
    progress: Progress | None = None,
    params: dict[str, Any] | None = None,
    min_threat_rows: int = MIN_THREAT_ROWS,
) -> dict:
    """Fit on all rows, validate by grouped CV, choose thresholds, write the model folder.

    `domains` names each row's genre (default: all `SERVED_DOMAIN`); rows of other genres train
    through domain adaptation, and validation and routing thresholds are taken on the served rows.
    `files` names each row's file, for the threat head's weights (`moderation.ml.threat`); it is fitted
    when at least `min_threat_rows` rows have the category `threat`.
    """
    say = progress or silent
    labels = [int(y) for y in labels]
    _check_inputs(texts, labels, categories, groups, domains, files)
    texts = list(texts)
    groups = list(groups) if groups is not None else [f"row{i}" for i in range(len(texts))]
    domains = list(domains) if domains is not None else [SERVED_DOMAIN] * len(texts)
    categories = list(categories) if categories is not None else [None] * len(texts)
    resolved = resolve_params(len(texts), params)
    y = np.asarray(labels)
    started = time.perf_counter()

    say(f"cross-validating on {len(texts)} rows in {len(set(groups))} groups, "
        "and fitting the final model on all rows beside the folds")
    oof, folds, pipeline = cross_fit(texts, y, groups, resolved, seed=seed, domains=domains, progress=say)
    # The service scores comments: its thresholds and headline figures come from the comment rows.
    domain_of = np.asarray(domains)
    served = served_rows(domain_of, y)
    rows_from = "all rows" if served.all() else f"the {SERVED_DOMAIN} rows"
    if oof is None:
        say(f"too little data for cross-validation ({folds} fold possible); using default thresholds")
        decision = FALLBACK_THRESHOLDS["decision"]
        routing = {"approve_threshold": FALLBACK_THRESHOLDS["approve"],
                   "reject_threshold": FALLBACK_THRESHOLDS["reject"], "source": "default"}
        validation: dict[str, Any] = {"skipped": "too little data for cross-validation"}
        evidence = None
    else:
        decision = DECISION_THRESHOLD
        y_served, oof_served = y[served], oof[served]
        # Thresholds come from the per-class score distributions at a site's removal rate, never from
        # the class mix of the training file (moderation.ml.calibration).
        evidence = calibration_evidence(y, oof, served, folds=folds, seed=seed, sources=sources)
        routing = {**default_routing(evidence, decision), "rows": len(y_served)}
        if not has_served_rows(domain_of, y):
            # Scores of tweets say nothing of how a site's comments score: a model calibrated on them leaked
            # 7.6 % of what it published on GermEval 2021 comments (benchmarks/replay_site.py, first batch).
            say(f"no {SERVED_DOMAIN} rows of both classes to calibrate on: the model decides nothing alone "
                "until `retrain` calibrates it on the site's decisions")
            evidence = None
            routing = {"approve_threshold": 0.0, "reject_threshold": 1.0, "source": NOT_CALIBRATED}
        best = best_macro_f1_threshold(y_served, oof_served)
        validation = {
            "method": f"stratified grouped {folds}-fold cross-validation, seed {seed}",
            "folds": folds,
            "rows": len(y_served),
            "rows_from": rows_from,
            "at_decision_threshold": classification_metrics(y_served, oof_served, decision),
            # For information: tuned on these same predictions, so optimistic.
            "best_threshold": best,
            "at_best_threshold": classification_metrics(y_served, oof_served, best),
            # Every row scored as the served domain, the way the service scores any text.
            "by_domain": {name: classification_metrics(y[domain_of == name], oof[domain_of == name], decision)
                          for name in sorted(set(domains)) if len(set(y[domain_of == name])) == 2},
        }
        say(f"cross-validated macro-F1 {validation['at_decision_threshold']['macro_f1']:.4f} "
            f"at threshold {decision:.3f} ({time.perf_counter() - started:.0f}s)")

    say("fitting the category and threat heads")
    # Both heads see the features of the pipeline fitted on all rows, as the fast path gives them.
    features = pipeline[:-1].transform(texts)
    head, category_counts = _fit_category_head(features, labels, categories, seed)
    threat_head, threat = fit_threat_head(features, categories, groups, files, seed=seed,
                                          min_rows=min_threat_rows, progress=say)
    strip_for_storage(pipeline)
    artifact = {"format": ARTIFACT_FORMAT, "pipeline": pipeline, "category_head": head, "threat_head": threat_head}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (ARTIFACT_NAME + ".tmp")
    joblib.dump(artifact, tmp, compress=3)
    os.replace(tmp, out / ARTIFACT_NAME)
    sha = file_sha256(out / ARTIFACT_NAME)
    now = datetime.now(UTC)
    n_features = [len(v.vocabulary_) for _, v in text_parts(pipeline)[1].transformer_list]
    encoder = encoder_part(pipeline)
    metadata = {
        "version": f"{now:%Y.%m.%d}-{sha[:7]}",
        "created_at": now.isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "artifact": {"file": ARTIFACT_NAME, "sha256": sha,
                     "bytes": (out / ARTIFACT_NAME).stat().st_size, "format": ARTIFACT_FORMAT},
        "training_data": sources or [],
        "rows": len(texts),
        "offensive_rows": int(y.sum()),
        "domains": dict(sorted(Counter(domains).items())),
        "served_domain": SERVED_DOMAIN,
        "seed": seed,
        "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()},
        "n_features": n_features,
        **({"encoder": encoder.source_} if encoder is not None else {}),
        "validation": validation,
        "decision_threshold": decision,
        "routing": routing,
        **({"calibration": evidence.to_metadata()} if evidence is not None else {}),
        "categories": {"labels": [str(c) for c in head.classes_] if head is not None else [],
                       "training_rows": category_counts},
        "threat": threat,
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    write_metadata(out, metadata)
    say(f"wrote {out} (version {metadata['version']}, {metadata['artifact']['bytes']} bytes)")
    return metadata
