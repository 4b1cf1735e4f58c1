"""Reproduce the grouped 5-fold cross-validation figures of the training recipe.

    .venv/bin/python benchmarks/cv_germeval.py                      # 2018 alone, shipped recipe
    .venv/bin/python benchmarks/cv_germeval.py --data ../shared/data/germeval2021/GermEval21_TrainData.csv
    .venv/bin/python benchmarks/cv_germeval.py --data A --data B    # combined
    .venv/bin/python benchmarks/cv_germeval.py --baseline           # plain TF-IDF + LR
    .venv/bin/python benchmarks/cv_germeval.py --set C=2 --set nb_alpha=1

With --seeds N the figures are means over N different fold assignments.
Prints shared-task macro-F1 (harmonic mean of macro precision and macro recall) of the
out-of-fold predictions at threshold 0.5 and at the threshold that maximises it, plus ROC-AUC.
With several files it also prints macro-F1 at 0.5 on each file's rows alone: the 2021 rows'
figure is the closest estimate of the held-out GermEval 2021 score for a model trained on both.
With --routing it prints what approve/reject thresholds would decide on the comment rows.
With several genres (GermEval 2018 tweets beside comments) every row is scored as a comment, the
way the service scores any text, so the all-rows figures mix genres: read the per-file ones.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderation.ml.data import read_datasets  # noqa: E402
from moderation.ml.metrics import (  # noqa: E402
    best_macro_f1_threshold,
    classification_metrics,
    routing_thresholds,
)
from moderation.ml.pipeline import SERVED_DOMAIN, served_rows  # noqa: E402
from moderation.ml.train import out_of_fold_scores, resolve_params  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "germeval2018" / "germeval2018.training.txt"
# A plain TF-IDF (word 1-2 + char 2-5) logistic regression, as in the data README.
BASELINE = {"word_ngram_range": (1, 2), "char_ngram_range": (2, 5), "min_df": 1,
            "max_df": 1.0, "nb_alpha": None, "C": 1.0, "class_weight": None,
            "normalize": False, "word_weight": 1.0, "style_weight": None,
            "domain_adaptation": False}


def routing_table(labels: np.ndarray, oof: np.ndarray, domains, base_rate: float = 0.10) -> dict:
    """Share decided and their precision per threshold on the served rows, also re-weighted to `base_rate` toxic."""
    served = served_rows(domains, labels)
    rows_from = "all rows" if served.all() else f"the {SERVED_DOMAIN} rows"
    y, s = labels[served], oof[served]
    toxic, ok = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    approve = {}
    for t in (0.10, 0.15, 0.20, 0.25, 0.30):
        below = s < t
        hit, miss = int(y[below].sum()), int((1 - y[below]).sum())
        at_rate = base_rate * hit / toxic + (1 - base_rate) * miss / ok
        approve[f"< {t:.2f}"] = {
            "published": round(float(below.mean()), 3),
            "toxic_among_published": round(hit / max(hit + miss, 1), 3),
            f"at_{base_rate:.0%}_toxic": {"published": round(at_rate, 3),
                                         "toxic_among_published": round(base_rate * hit / toxic / at_rate, 3)
                                         if at_rate else None}}
    reject = {f">= {t:.2f}": {"rejected": round(float((s >= t).mean()), 3),
                              "precision": round(float(y[s >= t].mean()), 3) if (s >= t).any() else None}
              for t in (0.80, 0.90, 0.95)}
    default = routing_thresholds(y, s, 0.5)
    return {"rows": int(served.sum()), "rows_from": rows_from, "toxic_share": round(float(y.mean()), 3),
            "approve": approve,
            "reject": reject, "default_thresholds": {k: default[k] for k in ("approve_threshold", "reject_threshold")}}


def _parse_set(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    """Run grouped CV for one recipe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", help="labelled file (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="average over this many fold assignments (seed, seed+1, ...)")
    parser.add_argument("--baseline", action="store_true", help="plain TF-IDF + LR recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyper-parameter")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--routing", action="store_true",
                        help="also print what approve/reject thresholds decide on the comment rows (first seed)")
    parser.add_argument("--ungrouped", action="store_true",
                        help="plain stratified K-fold (every row its own group), for comparison")
    args = parser.parse_args(argv)
    data = read_datasets(args.data or [DEFAULT_DATA])
    if args.ungrouped:
        data.groups = [f"row{i}" for i in range(len(data.texts))]
    overrides = {**(BASELINE if args.baseline else {}), **_parse_set(args.set)}
    params = resolve_params(len(data.texts), overrides)
    started = time.perf_counter()
    labels = np.asarray(data.labels)
    ends = np.cumsum([s["rows"] for s in data.sources])
    file_rows = {s["path"]: slice(end - s["rows"], end) for s, end in zip(data.sources, ends, strict=True)}
    runs, by_file = [], {name: [] for name in file_rows}
    for seed in range(args.seed, args.seed + args.seeds):
        oof, folds = out_of_fold_scores(data.texts, data.labels, data.groups, params,
                                        seed=seed, n_jobs=args.jobs, domains=data.domains)
        best = best_macro_f1_threshold(data.labels, oof)
        runs.append((classification_metrics(data.labels, oof, 0.5),
                     classification_metrics(data.labels, oof, best), best))
        for name, rows in file_rows.items():
            by_file[name].append(classification_metrics(labels[rows], oof[rows], 0.5)["macro_f1"])
        if args.routing and seed == args.seed:
            routing = routing_table(labels, oof, data.domains)
    print(json.dumps({
        "data": [s["path"] for s in data.sources],
        "rows": len(data.texts),
        "folds": folds,
        "seeds": list(range(args.seed, args.seed + args.seeds)),
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "macro_f1_at_0.5": round(100 * float(np.mean([r[0]["macro_f1"] for r in runs])), 2),
        "macro_f1_at_best_threshold": round(
            100 * float(np.mean([r[1]["macro_f1"] for r in runs])), 2),
        "best_threshold": [round(r[2], 4) for r in runs],
        "roc_auc": round(float(np.mean([r[0]["roc_auc"] for r in runs])), 4),
        **({"macro_f1_at_0.5_by_file": {name: round(100 * float(np.mean(f1)), 2)
                                        for name, f1 in by_file.items()}} if len(by_file) > 1 else {}),
        **({"routing": routing} if args.routing else {}),
        "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
