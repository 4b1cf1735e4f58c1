"""The threat head: P(threat) for every comment, whatever the offensive verdict, and the threshold it fires at.

A binary logistic regression on the features of the fitted pipeline, as the category head uses them.
Positives are the rows of category `threat`; negatives all other rows. Threat rows are few (the team's
408 in `data/team/threats.jsonl` against tens of thousands of others), so rows are weighted in three
kinds that weigh a third of the total each: the threats, the other rows of the files that hold threats
(their publishable contrasts: the same topics and words without the threat), and the rest.

The threshold lets at most `MAX_FALSE_ALARM_RATE` of the non-threat rows through, on out-of-fold scores
of the head cross-fitted over the rows' groups (a threat and its contrasts never on both sides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from moderation.ml.pipeline import build_threat_head
from moderation.ml.progress import Progress, silent

THREAT = "threat"
MIN_THREAT_ROWS = 20
MAX_FALSE_ALARM_RATE = 0.01
N_SPLITS = 5
THREATS, CONTRASTS, OTHERS = 0, 1, 2
KIND_NAMES = ("threat", "contrast", "other")


def row_kinds(categories: list[str | None], files: list[str] | None) -> np.ndarray:
    """Return each row's kind: a threat, another row of a file that holds threats (a contrast), or other.

    Without `files` all rows count as one file.
    """
    files = files if files is not None else [""] * len(categories)
    threat_files = {name for name, category in zip(files, categories, strict=True) if category == THREAT}
    return np.array([THREATS if category == THREAT else CONTRASTS if name in threat_files else OTHERS
                     for name, category in zip(files, categories, strict=True)], dtype=int)


def row_weights(kinds: np.ndarray) -> np.ndarray:
    """Return per-row weights that give each kind present an equal share of the total (mean weight 1)."""
    counts = np.bincount(kinds, minlength=3)
    present = int((counts > 0).sum())
    return len(kinds) / (present * counts[kinds])


def false_alarm_threshold(negatives: np.ndarray, max_rate: float = MAX_FALSE_ALARM_RATE) -> float:
    """Return the lowest threshold at which at most `max_rate` of the `negatives` score at or above it."""
    ordered = np.sort(np.asarray(negatives, dtype=float))[::-1]
    allowed = int(np.floor(max_rate * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return 0.0
    # Just above the first score that may not pass: ties with it stay below too.
    return float(np.nextafter(ordered[allowed], np.inf))


def _cross_fit(features, y: np.ndarray, kinds: np.ndarray, groups: list[str], seed: int
               ) -> tuple[np.ndarray | None, int]:
    folds = min(N_SPLITS, len({g for g, positive in zip(groups, y, strict=True) if positive}),
                len({g for g, positive in zip(groups, y, strict=True) if not positive}))
    if folds < 2:
        return None, folds
    oof = np.full(len(y), np.nan)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(y)), y, groups):
        if len(set(y[train].tolist())) < 2:
            return None, folds
        head = build_threat_head(seed=seed).fit(features[train], y[train], sample_weight=row_weights(kinds[train]))
        oof[test] = head.predict_proba(features[test])[:, 1]
    return oof, folds


def fit_threat_head(features, categories: list[str | None], groups: list[str], files: list[str] | None, *,
                    seed: int = 0, min_rows: int = MIN_THREAT_ROWS, progress: Progress | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """Fit the threat head on `features` (one row per training row); return (head or None, its metadata).

    None, with the reason in the metadata, when there are fewer than `min_rows` threat rows or too few
    groups to cross-fit a threshold.
    """
    say = progress or silent
    kinds = row_kinds(categories, files)
    counts = {name: int(n) for name, n in zip(KIND_NAMES, np.bincount(kinds, minlength=3), strict=True)}
    y = (kinds == THREATS).astype(int)
    if counts["threat"] < min_rows:
        say(f"no threat head: {counts['threat']} rows of category threat, at least {min_rows} are needed")
        return None, {"skipped": f"{counts['threat']} threat rows; at least {min_rows} are needed", "rows": counts}
    oof, folds = _cross_fit(features, y, kinds, groups, seed)
    if oof is None:
        say("no threat head: too few groups to cross-fit its threshold")
        return None, {"skipped": "too few groups to cross-fit the threshold", "rows": counts}
    negative = y == 0
    threshold = false_alarm_threshold(oof[negative])
    flagged = oof >= threshold
    contrasts = kinds == CONTRASTS
    measured = {
        # The features come from the pipeline fitted on all rows; only the head is refitted per fold, so
        # these figures are slightly optimistic (the vocabulary and NB ratios saw the held-out rows).
        "method": (f"stratified grouped {folds}-fold cross-fitting of the head (seed {seed}) on the features of "
                   "the pipeline fitted on all rows: slightly optimistic"),
        "folds": folds,
        "recall": round(float(flagged[y == 1].mean()), 4),
        "false_alarm_rate": round(float(flagged[negative].mean()), 4),
        "false_alarm_rate_contrasts": round(float(flagged[contrasts].mean()), 4) if contrasts.any() else None,
        "roc_auc": round(float(roc_auc_score(y, oof)), 4),
    }
    head = build_threat_head(seed=seed).fit(features, y, sample_weight=row_weights(kinds))
    say(f"threat head: threshold {threshold:.3f}, out-of-fold recall {measured['recall']:.3f} at "
        f"{measured['false_alarm_rate']:.4f} false alarms ({counts['threat']} threat rows)")
    return head, {
        "threshold": threshold,
        "max_false_alarm_rate": MAX_FALSE_ALARM_RATE,
        "rows": counts,
        "weights": "threat rows, the other rows of their files and all other rows weigh a third of the total each",
        "out_of_fold": measured,
    }
