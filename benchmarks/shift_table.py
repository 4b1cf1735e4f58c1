"""Figures and the printed table of benchmarks/shift_eval.py, computed from its stored scores alone."""

from __future__ import annotations

from typing import Any

import numpy as np

from moderation.ml.functional import SUITE_CATEGORIES, Case, pass_rates
from moderation.ml.shift import bootstrap_primary, cell_metrics, primary_figure

SUITE = "suite"
SHORT = {"threat": "threat", "call_to_violence": "call", "dehumanisation": "dehum", "slur": "slur",
         "insult_present": "insult", "profanity_untargeted": "profan", "negated_hate": "negated",
         "counter_speech": "counter", "quoted_hate": "quoted", "criticism_public_figure": "critic",
         "dialect": "dialect", "disguised_insult": "disguise", "harmless": "harmless"}
NAME_WIDTH = 20
TRAINING_NAMES = {"germeval2018": "GE18", "germeval2021": "GE21", "gahd": "GAHD", "team": "team threats"}


def _complete_seeds(entry: dict, cells: list[str]) -> list[str]:
    return sorted((s for s, done in entry["seeds"].items() if all(c in done for c in cells)), key=int)


def summarise(store: dict, names: list[str], *, replicates: int) -> dict[str, Any]:
    """Return per-recipe figures (means over seeds), the primary figure and its bootstrap noise."""
    shift_cells = [c for c in store["cells"] if c != SUITE]
    threshold = store["threshold"]
    suite = store["suite"]
    cases = [Case(i, c, "", y) for i, c, y in zip(suite["ids"], suite["categories"], suite["labels"], strict=True)]
    cell_labels = {c: np.asarray(store["data"][store["cells"][c]["test"]]["labels"])[store["cells"][c]["rows"]]
                   for c in shift_cells}
    out: dict[str, Any] = {"recipes": {}, "cells": shift_cells, "threshold": threshold}
    cell_scores, suite_scores = {}, {}
    for name in names:
        entry = store["recipes"][name]
        seeds = _complete_seeds(entry, [*shift_cells, SUITE])
        if not seeds:
            continue
        per_seed = [entry["seeds"][s] for s in seeds]
        cell_scores[name] = {c: np.array([run[c]["scores"] for run in per_seed]) for c in shift_cells}
        suite_scores[name] = np.array([run[SUITE]["scores"] for run in per_seed])
        cells = {c: {k: float(np.mean([cell_metrics(cell_labels[c], s, threshold)[k] for s in cell_scores[name][c]]))
                     for k in ("macro_f1", "roc_auc", "approvable")} for c in shift_cells}
        rates = [pass_rates(cases, s, threshold) for s in suite_scores[name]]
        categories = {k: float(np.mean([r[k] for r in rates])) for k in rates[0]}
        cv = entry.get("cv", {})
        cv_mean = None
        if cv:
            cv_mean = float(np.mean([np.mean(list(by_corpus.values())) for by_corpus in cv.values()]))
        out["recipes"][name] = {
            "seeds": [int(s) for s in seeds], "cells": cells, "categories": categories,
            "suite_mean": float(np.mean(list(categories.values()))),
            "primary": primary_figure([cells[c]["roc_auc"] for c in shift_cells], categories),
            "cv": cv_mean, "fit_seconds": sum(run[c]["seconds"] for run in per_seed for c in run),
        }
    done = list(out["recipes"])
    if done:
        halves = bootstrap_primary(cell_labels, cell_scores, suite["categories"], suite["labels"], suite_scores,
                                   threshold, replicates=replicates, seed=0, halves=True)
        samples = {n: parts.sum(axis=1) for n, parts in halves.items()}
        reference = done[0]
        out["noise"] = {"replicates": replicates, "reference": reference,
                        "se": {n: float(samples[n].std(ddof=1)) for n in done},
                        "diff_se": {n: float((samples[n] - samples[reference]).std(ddof=1)) for n in done[1:]},
                        # (AUC half, suite half) of the difference's noise
                        "diff_se_halves": {n: [float(x) for x in (halves[n] - halves[reference]).std(axis=0, ddof=1)]
                                           for n in done[1:]}}
    return out


def _pct(value: float | None, width: int = 6) -> str:
    return f"{100 * value:{width}.1f}" if value is not None else " " * (width - 1) + "-"


def format_pass_rates(rates: dict[str, dict[str, float]]) -> str:
    """Return one row per model of its pass rate per suite category and their mean."""
    categories = [c for c in SUITE_CATEGORIES if c in next(iter(rates.values()))]
    head = f"{'':<{NAME_WIDTH}}" + "".join(f"{SHORT.get(c, c[:8]):>9}" for c in categories) + f"{'mean':>9}"
    lines = [head, "-" * len(head)]
    for name, by_category in rates.items():
        mean = float(np.mean([by_category[c] for c in categories]))
        lines.append(f"{name[:NAME_WIDTH - 1]:<{NAME_WIDTH}}" + "".join(_pct(by_category[c], 9) for c in categories)
                     + _pct(mean, 9))
    return "\n".join(lines)


def format_table(summary: dict, store: dict, *, margin: float | None) -> str:
    """Return the table: one row per recipe, the shift cells, the suite, then pass rates per category."""
    recipes, cells = summary["recipes"], summary["cells"]
    if not recipes:
        return "no recipe has all its cells yet"
    noise = summary["noise"]
    reference = noise["reference"]
    has_cv = any(r["cv"] is not None for r in recipes.values())
    block = 20
    top = " " * NAME_WIDTH + f"{'primary':>8}{'vs ' + reference[:8]:>14} |"
    top += "".join(f" {c:^{block - 2}} |" for c in cells) + f"{'suite':>7}" + (f"{'cv':>7}" if has_cv else "")
    sub = " " * NAME_WIDTH + f"{'':>8}{'diff +- se':>14} |"
    sub += "".join(f"{'F1':>6}{'AUC':>6}{'auto':>6} |" for _ in cells) + f"{'pass':>7}"
    sub += f"{'F1':>7}" if has_cv else ""
    lines = [top, sub, "-" * len(sub)]
    for name, r in recipes.items():
        diff = ""
        if name != reference:
            diff = f"{r['primary'] - recipes[reference]['primary']:+.1f} +- {noise['diff_se'][name]:.1f}"
        row = f"{name[:NAME_WIDTH - 1]:<{NAME_WIDTH}}{r['primary']:8.1f}{diff:>14} |"
        row += "".join(f"{_pct(r['cells'][c]['macro_f1'])}{_pct(r['cells'][c]['roc_auc'])}"
                       f"{_pct(r['cells'][c]['approvable'])} |" for c in cells)
        row += _pct(r["suite_mean"], 7) + (_pct(r["cv"], 7) if has_cv else "")
        lines.append(row)
    trained_on = "+".join(TRAINING_NAMES.get(n, n) for n in store["cells"][SUITE]["train"])
    lines += ["", f"suite: share of cases passed per category (trained on {trained_on})",
              format_pass_rates({name: r["categories"] for name, r in recipes.items()})]
    seeds = sorted({s for r in recipes.values() for s in r["seeds"]})
    lines += ["", f"primary = 50 x mean AUC of the {len(cells)} shift cells + 50 x mean suite pass rate per category; "
              f"F1, AUC, auto, pass x 100; threshold {summary['threshold']}; seeds {seeds}",
              f"noise: paired bootstrap, {noise['replicates']} resamples of held-out rows (within class) and suite "
              "cases (within category); se of the primary figure: "
              + ", ".join(f"{n} {se:.2f}" for n, se in noise["se"].items())
              + ("; se of the difference from " + reference + " (of it from the AUC half / the suite half): "
                 + ", ".join(f"{n} {se:.2f} ({noise['diff_se_halves'][n][0]:.2f} / {noise['diff_se_halves'][n][1]:.2f})"
                             for n, se in noise["diff_se"].items()) if noise["diff_se"] else ""),
              (f"decision rule: a recipe beats another when its primary figure is higher by more than {margin} points"
               if margin is not None else "decision rule: margin not fixed yet (2 x se of a difference, rounded up "
               "to the next half point)")]
    spec = store["cells"]
    lines.append("held-out rows left out as equal to a training row: "
                 + ", ".join(f"{c} {spec[c]['dropped']}" for c in cells)
                 + f"; suite cases equal to a training row: {len(spec[SUITE]['in_training'])}")
    lines.append("fit time, all cells and seeds: " + ", ".join(f"{n} {r['fit_seconds']:.0f} s"
                                                              for n, r in recipes.items()))
    return "\n".join(lines)
