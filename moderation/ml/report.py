"""Write an evaluation report folder: PNG plots and an index.html tying them together."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from moderation.ml import extras
from moderation.ml.metrics import shared_task_macro_f1

TABLE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def threshold_table(y_true, scores, extra: tuple[float, ...] = ()) -> list[dict[str, float]]:
    """Return precision, recall, macro-F1 and share flagged at a range of thresholds."""
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)
    rows = []
    for t in sorted(set(TABLE_THRESHOLDS) | {round(float(e), 4) for e in extra}):
        flagged = scores >= t
        tp = int(np.sum(flagged & (y_true == 1)))
        rows.append({
            "threshold": t,
            "flagged_share": float(flagged.mean()) if len(scores) else 0.0,
            "precision": tp / int(flagged.sum()) if flagged.any() else 0.0,
            "recall": tp / int(y_true.sum()) if y_true.any() else 0.0,
            "macro_f1": shared_task_macro_f1(y_true, flagged.astype(int)),
        })
    return rows


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: str | Path, y_true, scores, metrics: dict[str, Any],
                 thresholds: dict[str, float], title: str) -> Path:
    """Write the plots and index.html into `out_dir` and return the index path."""
    plt = extras.pyplot("evaluate --report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)

    fig, ax = plt.subplots(figsize=(5, 4))
    if len(set(y_true.tolist())) == 2:
        precision, recall, _ = precision_recall_curve(y_true, scores)
        ax.plot(recall, precision)
    ax.set(xlabel="recall (offensive)", ylabel="precision (offensive)",
           title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    _save(plt, fig, out / "precision_recall.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    for label, name in ((0, "other"), (1, "offensive")):
        ax.hist(scores[y_true == label], bins=bins, alpha=0.6, label=name)
    for name, value in thresholds.items():
        ax.axvline(value, linestyle="--", color="black", linewidth=0.8)
        ax.text(value, ax.get_ylim()[1] * 0.95, name, rotation=90, va="top", fontsize=8)
    ax.set(xlabel="toxicity", ylabel="comments", title="Scores per class")
    ax.legend()
    _save(plt, fig, out / "score_histogram.png")

    matrix = np.asarray(metrics["confusion_matrix"]["matrix"])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["other", "offensive"],
           yticklabels=["other", "offensive"], xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (t={metrics['threshold']:.3f})")
    _save(plt, fig, out / "confusion_matrix.png")

    table = threshold_table(y_true, scores, tuple(thresholds.values()))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(table) + 1))
    ax.axis("off")
    cells = [[f"{r['threshold']:.3f}", f"{r['flagged_share']:.3f}", f"{r['precision']:.3f}",
              f"{r['recall']:.3f}", f"{r['macro_f1']:.3f}"] for r in table]
    ax.table(cellText=cells, colLabels=["threshold", "flagged", "precision", "recall",
                                        "macro-F1"], loc="center")
    ax.set_title("Threshold table")
    _save(plt, fig, out / "threshold_table.png")

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    rows = "".join(
        f"<tr><td>{r['threshold']:.3f}</td><td>{r['flagged_share']:.3f}</td>"
        f"<td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td><td>{r['macro_f1']:.3f}</td></tr>"
        for r in table
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Macro-F1 (shared-task style): <b>{metrics['macro_f1']:.4f}</b>;
ROC-AUC: {metrics['roc_auc'] if metrics['roc_auc'] is None else round(metrics['roc_auc'], 4)};
rows: {metrics['rows']}; decision threshold {metrics['threshold']:.4f}.</p>
<h2>Precision-recall curve</h2><img src="precision_recall.png" alt="precision-recall curve">
<h2>Scores per class</h2><img src="score_histogram.png" alt="score histograms">
<h2>Confusion matrix</h2><img src="confusion_matrix.png" alt="confusion matrix">
<h2>Thresholds</h2><img src="threshold_table.png" alt="threshold table">
<table border="1"><tr><th>threshold</th><th>flagged</th><th>precision</th><th>recall</th>
<th>macro-F1</th></tr>{rows}</table>
<p>All figures: <a href="metrics.json">metrics.json</a>.</p>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
