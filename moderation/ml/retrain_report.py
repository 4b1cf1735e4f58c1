"""The retraining report: candidate and serving model on the gate's site decisions, side by side, with plots."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from moderation.ml import extras


def automation_curve(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None,
                     points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """For approve thresholds from 0 to 1: (weighted share published below it, weighted removed share among those)."""
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    total = w.sum()
    automation, leak = [], []
    for t in np.linspace(0, 1, points):
        below = scores < t
        published = w[below].sum()
        automation.append(published / total if total else 0.0)
        leak.append(w[below & (y == 1)].sum() / published if published else 0.0)
    return np.asarray(automation), np.asarray(leak)


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "–" if value is None else pattern.format(value)


def write_retrain_report(out_dir: str | Path, y, weights, scores: dict[str, np.ndarray | None],
                         gate: dict[str, Any], expected: dict[str, Any],
                         say: Callable[[str], None] | None = None,
                         correction: dict[str, Any] | None = None) -> Path:
    """Write report.json, index.html and, with matplotlib, precision_recall.png and automation.png; return the index.

    `y`, `weights` and `scores` are the gate's decisions (possibly none, when the run was forced without a gate).
    Without matplotlib (a serving install) the plots are left out, `say` is told so, and the page says so.
    `correction` is the candidate's `site.correction` (its C, how it was chosen, the grid's figures), if corrected.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=int)
    w = np.asarray(weights, dtype=float)
    try:
        plt = extras.pyplot("the retraining report's plots")
    except extras.TrainingPackageMissing as exc:
        plots_note = f"plots skipped: {exc}"
        if say is not None:
            say(f"report {out}: {plots_note}")
    else:
        plots_note = None
        _plot(plt, out, y, w, scores, expected)
    summary = {"gate": gate, "expected_under_policy": expected, "plots": plots_note is None,
               **({"correction": correction} if correction else {})}
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    (out / "index.html").write_text(_page(gate, expected, plots_note, correction), encoding="utf-8")
    return out / "index.html"


def _plot(plt, out: Path, y: np.ndarray, w: np.ndarray, scores: dict[str, np.ndarray | None],
          expected: dict[str, Any]) -> None:
    drawable = {v: np.asarray(s) for v, s in scores.items() if s is not None and len(set(y.tolist())) == 2}
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for version, s in drawable.items():
        precision, recall, _ = precision_recall_curve(y, s, sample_weight=w)
        ax.plot(recall, precision, label=version)
    ax.set(xlabel="recall (removed)", ylabel="precision (removed)", xlim=(0, 1), ylim=(0, 1.02),
           title="Gate decisions: precision-recall (weighted)")
    if drawable:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no decisions to compare on", ha="center")
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for version, s in drawable.items():
        automation, leak = automation_curve(y, s, w)
        ax.plot(leak * 100, automation * 100, label=version)
    if expected.get("policy"):
        ax.axvline(expected["policy"]["max_leak"] * 100, linestyle="--", color="black", linewidth=0.8)
    ax.set(xlabel="leak: removed share of published (%)", ylabel="published without a person (%)",
           title="Publishing against leak (gate decisions, weighted)")
    if drawable:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "automation.png", dpi=100)
    plt.close(fig)


def _correction_html(correction: dict[str, Any] | None) -> str:
    if not correction:
        return ""
    how = {"cross-validation": "chosen by cross-validation on the site's decisions",
           "fixed": "fixed by the caller", "fallback": "the fixed fallback"}.get(correction.get("chosen_by"), "")
    page = f"<h2>The correction</h2>\n<p>C = {correction['C']:g} ({how})."
    if correction.get("note"):
        page += f" {html.escape(correction['note'])}."
    page += "</p>\n"
    if correction.get("grid"):
        page += ("<table><tr><th>C</th><th>out-of-fold log-loss (weighted, balanced)</th>"
                 "<th>out-of-fold weighted ROC-AUC</th></tr>\n")
        for row in correction["grid"]:
            mark = " <b>(chosen)</b>" if row["C"] == correction["C"] else ""
            page += (f"<tr><td>{row['C']:g}{mark}</td><td>{_fmt(row.get('log_loss'))}</td>"
                     f"<td>{_fmt(row.get('weighted_roc_auc'))}</td></tr>\n")
        page += "</table>\n"
    return page


def _page(gate: dict[str, Any], expected: dict[str, Any], plots_note: str | None,
          correction: dict[str, Any] | None = None) -> str:
    verdict = "promoted" if gate["passed"] or gate["forced"] else "not promoted"
    forced_note = f" — forced: {html.escape(str(gate['reason']))}" if gate["forced"] else ""
    auto = expected.get("automated_share")
    page = f"""<!doctype html><meta charset="utf-8"><title>Retraining report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}}td,th{{padding:.2rem .8rem}}</style>
<h1>Retraining report</h1>
<p><b>Candidate {verdict}</b>{forced_note}. Gate: weighted ROC-AUC {_fmt(gate.get('candidate'))} against
{_fmt(gate.get('current'))} of {html.escape(gate['compared_with'])} (tolerance {gate['tolerance']}), on
{gate['compared_rows']} {html.escape(gate['compared_on'])}: {gate.get('removed', 0)} removed,
{gate.get('kept', 0)} kept.</p>
<h2>The candidate under the site's policy (expected, from its calibration)</h2>
<p>publish below {_fmt(expected.get('approve_threshold'))}, reject at {_fmt(expected.get('reject_threshold'))}
or above: {_fmt(None if auto is None else auto * 100, '{:.1f}')}% decided without a person at a removal
rate of {_fmt(expected.get('policy', {}).get('removal_rate') if expected.get('removal_rate') is None
              else expected.get('removal_rate'), '{:.3f}')}; leak {_fmt(expected.get('leak'))} (upper bound
{_fmt(expected.get('leak_upper'))}), reject precision {_fmt(expected.get('reject_precision'))} (lower bound
{_fmt(expected.get('reject_precision_lower'))}).</p>
""" + _correction_html(correction)
    if plots_note is None:
        page += """<img src="precision_recall.png" alt="precision-recall of both models">
<img src="automation.png" alt="share published against leak">
"""
    else:
        page += f"<p><i>{html.escape(plots_note)}</i></p>\n"
    return page
