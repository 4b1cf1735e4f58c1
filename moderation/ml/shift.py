"""Figures of the shift evaluation (benchmarks/shift_eval.py): how a model does on data it never saw.

Per held-out set: macro-F1 at the decision threshold, ROC-AUC, and the share of comments that could be
published automatically at a leak budget (`approvable_share`). Per recipe one primary figure
(`primary_figure`), and its noise from a paired bootstrap over the rows of the held-out sets and the
cases of the functional suite (`bootstrap_primary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moderation.ml.metrics import shared_task_macro_f1

TOXIC_RATE = 0.10
MAX_LEAK = 0.02


def _classes(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.shape[0]} labels but {scores.shape[0]} scores")
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        raise ValueError("both classes must occur")
    return pos, neg


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def roc_auc(labels, scores) -> float:
    """Return the ROC-AUC: the chance that a toxic row outscores a harmless one (ties count half)."""
    return _auc(*_classes(labels, scores))


def approvable_share(labels, scores, *, toxic_rate: float = TOXIC_RATE, max_leak: float = MAX_LEAK) -> float:
    """Return the largest share of comments one threshold could publish with at most `max_leak` toxic among them.

    The per-class score distributions are re-weighted to `toxic_rate` toxic comments, the mix a news
    site sees, instead of the file's own: publishing scores below t then publishes
    toxic_rate * P(score < t | toxic) + (1 - toxic_rate) * P(score < t | harmless) of all comments. A
    point estimate, with the threshold chosen on the same rows (the routing of issue 19 adds a
    confidence bound): swap in its function once it exists.
    """
    pos, neg = _classes(labels, scores)
    pos, neg = np.sort(pos), np.sort(neg)
    cuts = np.append(np.unique(np.concatenate([pos, neg])), np.inf)
    toxic = toxic_rate * np.searchsorted(pos, cuts, side="left") / len(pos)
    harmless = (1 - toxic_rate) * np.searchsorted(neg, cuts, side="left") / len(neg)
    share = toxic + harmless
    leak = np.divide(toxic, share, out=np.zeros_like(share), where=share > 0)
    allowed = leak <= max_leak + 1e-12
    return float(share[allowed].max()) if allowed.any() else 0.0


def cell_metrics(labels, scores, threshold: float) -> dict[str, Any]:
    """Return the figures of one held-out set: macro-F1 at `threshold`, ROC-AUC, approvable share."""
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    return {
        "rows": int(len(labels)),
        "toxic": int(labels.sum()),
        "macro_f1": shared_task_macro_f1(labels, (scores >= threshold).astype(int)),
        "roc_auc": roc_auc(labels, scores),
        "approvable": approvable_share(labels, scores),
    }


def primary_figure(aucs: Sequence[float], pass_rates: Mapping[str, float] | Sequence[float]) -> float:
    """Return 50 x the mean ROC-AUC of the shift cells + 50 x the suite's mean per-category pass rate (points)."""
    rates = list(pass_rates.values()) if isinstance(pass_rates, Mapping) else list(pass_rates)
    if not len(aucs) or not rates:
        raise ValueError("needs at least one shift cell and one suite category")
    return 50 * float(np.mean(aucs)) + 50 * float(np.mean(rates))


def bootstrap_primary(cell_labels: Mapping[str, Any], cell_scores: Mapping[str, Mapping[str, Any]],
                      case_categories: Sequence[str], case_labels, suite_scores: Mapping[str, Any],
                      threshold: float, *, replicates: int = 1000, seed: int = 0,
                      halves: bool = False) -> dict[str, np.ndarray]:
    """Return each recipe's primary figure on `replicates` bootstrap resamples, the same resamples for every recipe.

    Each resample draws the toxic and the harmless rows of every held-out set with replacement (so
    each keeps its class counts), and every suite category's cases with replacement. Scores are
    arrays of one row per held-out row (or one row per seed, rows in columns: figures are averaged over
    seeds). The spread of one recipe's figures is the noise of its primary figure; the spread of the
    difference between two recipes' figures, paired on the same resamples, is the noise of a comparison.
    With `halves`, each resample gives the figure's two halves (50 x mean AUC, 50 x mean pass rate) in two
    columns instead of their sum, to show where the noise comes from.
    """
    rng = np.random.default_rng(seed)
    case_labels = np.asarray(case_labels, dtype=int)
    by_class = {cell: (np.flatnonzero(np.asarray(y) == 1), np.flatnonzero(np.asarray(y) == 0))
                for cell, y in cell_labels.items()}
    categories = np.asarray(case_categories)
    by_category = [np.flatnonzero(categories == name) for name in dict.fromkeys(case_categories)]
    scores = {recipe: {cell: np.atleast_2d(np.asarray(cells[cell], dtype=float)) for cell in cell_labels}
              for recipe, cells in cell_scores.items()}
    passed = {recipe: (np.atleast_2d(np.asarray(suite_scores[recipe], dtype=float)) >= threshold) == case_labels
              for recipe in cell_scores}
    out = {recipe: np.empty((replicates, 2)) for recipe in cell_scores}
    for b in range(replicates):
        draws = {cell: (rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for cell, (pos, neg) in by_class.items()}
        picks = [rng.choice(rows, len(rows)) for rows in by_category]
        for recipe in cell_scores:
            aucs = [np.mean([_auc(seed_scores[p], seed_scores[n]) for seed_scores in scores[recipe][cell]])
                    for cell, (p, n) in draws.items()]
            rates = [passed[recipe][:, rows].mean() for rows in picks]
            out[recipe][b] = 50 * np.mean(aucs), 50 * np.mean(rates)
    return out if halves else {recipe: parts.sum(axis=1) for recipe, parts in out.items()}
