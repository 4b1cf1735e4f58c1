"""The retraining report: both models on the held-out slice, side by side, with plots."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from moderation.ml import extras


def automation_curve(y: np.ndarray, scores: np.ndarray, reject: float) -> tuple[np.ndarray, np.ndarray]:
    """For approve thresholds from 0 to the reject threshold: (share decided without a person, leak)."""
    automation, leak = [], []
    rejected = scores >= reject
    for t in np.linspace(0, reject, 101):
        approved = scores < t
        automation.append((approved.sum() + rejected.sum()) / len(scores))
        leak.append(y[approved].mean() if approved.any() else 0.0)
    return np.asarray(automation), np.asarray(leak)


def write_retrain_report(out_dir: str | Path, y, scores: dict[str, np.ndarray], metrics: dict[str, dict],
                         routing: dict[str, Any], gate: dict[str, Any], notes: dict[str, str] | None = None) -> Path:
    """Write report.json, precision_recall.png, automation.png and index.html; return the index path."""
    plt = extras.pyplot("the retraining report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=int)
    notes = notes or {}

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for version, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=f"{version}{notes.get(version, '')}")
    ax.set(xlabel="recall (offensive)", ylabel="precision (offensive)", xlim=(0, 1), ylim=(0, 1.02),
           title="Held-out slice: precision-recall")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for version, s in scores.items():
        automation, leak = automation_curve(y, s, routing["reject_threshold"])
        ax.plot(leak * 100, automation * 100, label=f"{version}{notes.get(version, '')}")
    ax.axvline(routing["approve_max_offensive"] * 100, linestyle="--", color="black", linewidth=0.8)
    ax.set(xlabel="leak: offensive share of auto-approved (%)", ylabel="decided without a person (%)",
           title="Automation rate against leak")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "automation.png", dpi=100)
    plt.close(fig)

    summary = {"gate": gate, "routing": routing, "metrics": metrics}
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td>{m['macro_f1']:.4f}</td><td>{m.get('roc_auc') or 0:.4f}</td>"
        f"<td>{m['threshold']:.3f}</td></tr>" for v, m in metrics.items())
    held = routing["held_out"]
    verdict = "promoted" if gate["passed"] or gate["forced"] else "not promoted"
    compared = f"{html.escape(gate['compared_on'])}, {gate['compared_rows']} rows"
    forced_note = f" — forced: {html.escape(str(gate['reason']))}" if gate["forced"] else ""
    page = f"""<!doctype html><meta charset="utf-8"><title>Retraining report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}}td,th{{padding:.2rem .8rem}}</style>
<h1>Retraining report</h1>
<p><b>Candidate {verdict}</b>: macro-F1 {gate['candidate']:.4f} against {gate['current']:.4f}
(Δ {gate['delta']:+.4f}, tolerance {gate['tolerance']}; compared on {compared}){forced_note}.
Held-out slice: {gate['held_out_rows']} rows, {gate['held_out_decisions']} of them moderator decisions.</p>
<table><tr><th>model</th><th>macro-F1</th><th>ROC-AUC</th><th>decision threshold</th></tr>{rows}</table>
<h2>Routing of the candidate (calibrated on the slice)</h2>
<p>approve below {routing['approve_threshold']:.4f}, reject at {routing['reject_threshold']:.4f} or above:
{held['automation_rate'] * 100:.1f}% decided without a person; expected leak
{(held['approved_offensive_rate'] or 0) * 100:.2f}% of auto-approved
(limit {routing['approve_max_offensive'] * 100:.1f}%);
rejected precision {(held['rejected_precision'] or 0) * 100:.1f}% (at least
{routing['reject_min_precision'] * 100:.0f}%).</p>
<img src="precision_recall.png" alt="precision-recall of both models">
<img src="automation.png" alt="automation rate against leak">
"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
