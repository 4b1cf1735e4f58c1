"""Shared-task metrics and the threshold choices made on out-of-fold predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

APPROVE_MAX_OFFENSIVE = 0.02
REJECT_MIN_PRECISION = 0.95
MIN_ROUTED = 20


def _per_class(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, tuple[float, float, int]]:
    out = {}
    for cls in (0, 1):
        tp = int(np.sum((y_pred == cls) & (y_true == cls)))
        predicted = int(np.sum(y_pred == cls))
        actual = int(np.sum(y_true == cls))
        out[cls] = (tp / predicted if predicted else 0.0, tp / actual if actual else 0.0, actual)
    return out


def shared_task_macro_f1(y_true, y_pred) -> float:
    """Return the harmonic mean of macro precision and macro recall (GermEval's macro-F1)."""
    stats = _per_class(np.asarray(y_true), np.asarray(y_pred))
    precision = (stats[0][0] + stats[1][0]) / 2
    recall = (stats[0][1] + stats[1][1]) / 2
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def classification_metrics(y_true, scores, threshold: float) -> dict[str, Any]:
    """Return macro-F1, per-class precision/recall/F1, AUCs and the confusion matrix."""
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)
    y_pred = (scores >= threshold).astype(int)
    stats = _per_class(y_true, y_pred)
    per_class = {}
    for cls, name in ((0, "other"), (1, "offensive")):
        p, r, support = stats[cls]
        per_class[name] = {"precision": p, "recall": r,
                           "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": support}
    both = len(set(y_true.tolist())) == 2
    return {
        "rows": int(len(y_true)),
        "threshold": float(threshold),
        "macro_f1": shared_task_macro_f1(y_true, y_pred),
        "macro_precision": (stats[0][0] + stats[1][0]) / 2,
        "macro_recall": (stats[0][1] + stats[1][1]) / 2,
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        "per_class": per_class,
        "roc_auc": float(roc_auc_score(y_true, scores)) if both else None,
        "average_precision": float(average_precision_score(y_true, scores)) if both else None,
        "confusion_matrix": {
            "labels": ["other", "offensive"],
            "matrix": confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        },
    }


def best_macro_f1_threshold(y_true, scores) -> float:
    """Return the threshold that maximises shared-task macro-F1 on the given scores."""
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)
    candidates = np.unique(np.round(scores, 4))
    if len(candidates) > 400:
        candidates = np.unique(np.quantile(scores, np.linspace(0.005, 0.995, 400)))
    best, best_f1 = 0.5, -1.0
    for t in candidates:
        f1 = shared_task_macro_f1(y_true, (scores >= t).astype(int))
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def routing_thresholds(y_true, scores, decision: float, *, max_leak: float = APPROVE_MAX_OFFENSIVE,
                       min_reject_precision: float = REJECT_MIN_PRECISION) -> dict[str, Any]:
    """Choose approve/reject thresholds: at most `max_leak` offensive among approved, at least
    `min_reject_precision` offensive among rejected (defaults 2% and 95%)."""
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], y_true[order]
    n = len(s)
    # approved = scores < t: the largest t whose approved set stays clean enough.
    approve = 0.0
    positives_below = np.cumsum(y)  # offensive among the k+1 lowest scores
    for k in range(n):
        t = s[k + 1] if k + 1 < n else 1.0
        if k + 1 < n and s[k + 1] == s[k]:
            continue
        if k + 1 >= MIN_ROUTED and positives_below[k] / (k + 1) <= max_leak:
            approve = float(t)
    # rejected = scores >= t: the smallest t whose rejected set is precise enough.
    reject = 1.0
    positives_above = np.cumsum(y[::-1])[::-1]  # offensive among scores >= s[k]
    for k in range(n - 1, -1, -1):
        if k > 0 and s[k - 1] == s[k]:
            continue
        count = n - k
        if count >= MIN_ROUTED and positives_above[k] / count >= min_reject_precision:
            reject = float(s[k])
    approve = min(approve, decision)
    reject = max(reject, decision)
    approved = scores < approve
    rejected = scores >= reject
    return {
        "approve_threshold": approve,
        "reject_threshold": reject,
        "approve_max_offensive": max_leak,
        "reject_min_precision": min_reject_precision,
        "out_of_fold": {
            "approved_share": float(approved.mean()) if n else 0.0,
            "approved_offensive_rate": float(y_true[approved].mean()) if approved.any() else None,
            "rejected_share": float(rejected.mean()) if n else 0.0,
            "rejected_precision": float(y_true[rejected].mean()) if rejected.any() else None,
        },
    }
