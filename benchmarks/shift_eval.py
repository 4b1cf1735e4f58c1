"""Judge a training recipe on text it never saw: one table of held-out-corpus and functional-suite figures.

    .venv/bin/python benchmarks/shift_eval.py --data-dir ../shared/data             # current and plain
    .venv/bin/python benchmarks/shift_eval.py --recipe current --recipe 2026-12-06 --seeds 2 --jobs 2
    .venv/bin/python benchmarks/shift_eval.py --recipe all --cv                      # every recipe, with CV
    .venv/bin/python benchmarks/shift_eval.py --from-json a.json --from-json b.json  # table only, no fit
    .venv/bin/python benchmarks/shift_eval.py --list-recipes
    .venv/bin/python benchmarks/shift_eval.py --model model                          # the suite on a stored model

Rows are recipes: "current" is moderation/ml/pipeline.py DEFAULT_PARAMS, the others change it (RECIPES
below); "2026-12-06" is the default before decision record 12, "lean" the one it chose. Each cell is
one fit of the pipeline on all its training rows (train.fit_pipeline, no cross-validation), then the
held-out rows are scored, every one as a comment, the way the service scores any text:
- GE18 <- 21+GAHD, GE21 <- 18+GAHD, GAHD <- 18+21: leave one corpus out of GermEval 2018, GermEval 2021
  and GAHD (train and dev), train on the other two, score the one left out.
- GE19 <- 18: train on GermEval 2018 alone, score GermEval 2019 (a later period, other accounts; our
  copy states no licence, so it is never trained on).
- suite: train on what the shipped model trains on (the three corpora and the team's own threats,
  data/team/threats.jsonl, which is read from the repository, not from --data-dir) and score the
  functional suite (benchmarks/functional/cases.jsonl): the share of cases passed per category, where a
  case passes when (score >= decision threshold) == its label. The team file and the suite were written
  separately and share no row (the check below counts suite cases equal to a training row of the cell:
  0 on 2026-12-07); seven cases share five words or more with a team row ("Ich weiß, wo du wohnst",
  "gehören an die Wand gestellt"), stock phrases of such threats, not copies. The four shift cells
  train on public corpora alone, so their figures stay comparable with earlier runs.
Per shift cell: F1 = GermEval's macro-F1 at the decision threshold (train.DECISION_THRESHOLD),
AUC = ROC-AUC, auto = the share of comments publishable at a 2 % leak at a 10 % toxic rate
(moderation.ml.shift.approvable_share). All x 100. Held-out rows equal to a training row of the cell
(lowercased, punctuation dropped) are left out and counted. With --cv, "cv" is the mean within-corpus
grouped 5-fold CV macro-F1 over the three corpora (secondary, slow). The scores of every cell go to a
JSON file (--json), so later analysis needs no refit; --reuse takes cells already there for the same
recipe parameters, data, suite and threshold (it cannot see a code change that alters what a recipe
computes: after one, write a new file).

Decision rule, fixed before any recipe was compared:
- Primary figure = 50 x the mean ROC-AUC over the four shift cells + 50 x the suite's mean per-category
  pass rate, in points (0-100; a constant score gets about 51: 25 for AUC 0.5, 26 for passing the
  publishable categories). The AUC half asks whether the ranking carries over to text of another
  source; it needs no threshold, which a site recalibrates anyway (issue 19), and it is comparable
  across held-out sets with different toxic rates. The suite half asks whether the verdict at the
  shipped threshold is right on the behaviours a newsroom cares about, every category weighted alike
  whatever its number of cases.
- A recipe beats another only when its primary figure is higher by more than MARGIN points. MARGIN is
  twice the standard error of the difference between two recipes' primary figures, from a paired
  bootstrap (REPLICATES resamples of every held-out set's rows within class and of the suite's cases
  within category, the same resamples for both recipes), rounded up to the next half point. It was
  measured once, between "current" and "plain" on seed 0, before any other comparison (see MARGIN).
  The script prints the noise of every run beside the table; a larger one later does not move MARGIN
  quietly, it calls for a new decision.
- Macro-F1, the auto share and CV are secondary: they explain a result, they do not decide it.
The bootstrap covers the sampling of rows within these sources, not the choice of sources: with three
corpora, a win on one held-out corpus alone deserves less trust than the margin suggests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderation.ml.data import read_dataset  # noqa: E402
from moderation.ml.functional import pass_rates, read_cases  # noqa: E402
from moderation.ml.pipeline import DEFAULT_PARAMS, build_pipeline  # noqa: E402
from moderation.ml.train import DECISION_THRESHOLD, fit_pipeline, out_of_fold_scores, resolve_params  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from shift_table import format_pass_rates, format_table, summarise  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
DEFAULT_SUITE = ROOT / "benchmarks" / "functional" / "cases.jsonl"
DEFAULT_JSON = Path(tempfile.gettempdir()) / "shift_eval.json"
CORPORA = {
    "germeval2018": "germeval2018/germeval2018.training.txt",
    "germeval2021": "germeval2021/GermEval21_TrainData.csv",
    "gahd": "gahd/gahd_train_dev.csv",
    "germeval2019": "germeval2019/germeval2019_training_subtask12.txt",  # validation only
}
TEAM = ROOT / "data" / "team" / "threats.jsonl"  # the team's own rows: in the suite cell's training only
TRAINABLE = ("germeval2018", "germeval2021", "gahd")
CELLS = {  # name: (training corpora, held-out corpus)
    "GE18 <- 21+GAHD": (("germeval2021", "gahd"), "germeval2018"),
    "GE21 <- 18+GAHD": (("germeval2018", "gahd"), "germeval2021"),
    "GAHD <- 18+21": (("germeval2018", "germeval2021"), "gahd"),
    "GE19 <- 18": (("germeval2018",), "germeval2019"),
}
SUITE = "suite"
REPLICATES = 1000
# Points of the primary figure (docstring). Measured on 2026-12-07, seed 0, the rule fixed in commit ec79d4e before
# the run: se of the difference current - plain 1.15 (of it 0.18 from the AUC half, 1.13 from the suite half);
# 2 x 1.15 = 2.3, rounded up to 2.5. The suite's 27 or so cases per category make most of the noise.
MARGIN: float | None = 2.5

# Plain TF-IDF: word 1-2 and char 3-5 n-grams, lowercased only, logistic regression with balanced class
# weights (so that 0.5 stays the balanced-error point, as for the current recipe); no NB scaling, style
# counts, encoder, domain adaptation or unmasking.
PLAIN = {"word_ngram_range": (1, 2), "char_ngram_range": (3, 5), "min_df": 1, "max_df": 1.0, "nb_alpha": None,
         "C": 1.0, "class_weight": "balanced", "normalize": False, "word_weight": 1.0, "style_weight": None,
         "encoder_weight": None, "domain_adaptation": False, "unmask": False}
# The default recipe until 2026-12-07 (decision record 12 replaced it with "lean").
DEFAULT_2026_12_06 = {"word_ngram_range": (1, 2), "char_ngram_range": (3, 5), "min_df": 1, "max_df": 0.9,
                      "nb_alpha": 0.07, "C": 3.0, "class_weight": "balanced", "normalize": True, "word_weight": 0.4,
                      "style_weight": 0.1, "domain_adaptation": True, "encoder_weight": 0.3, "encoder_dims": 128,
                      "unmask": True}
# Word unigrams and char 3-4 grams after normalisation, domain adaptation; no NB scaling, style counts,
# sentence encoder or unmasking.
LEAN = {"word_ngram_range": (1, 1), "char_ngram_range": (3, 4), "min_df": 1, "max_df": 0.9, "nb_alpha": None,
        "C": 3.0, "class_weight": "balanced", "normalize": True, "word_weight": 0.4, "style_weight": None,
        "domain_adaptation": True, "encoder_weight": None, "encoder_dims": 128, "unmask": False}
RECIPES: dict[str, dict[str, Any]] = {
    "current": {},
    "plain": PLAIN,
    "2026-12-06": DEFAULT_2026_12_06,
    "lean": LEAN,
    # One block at a time on top of "lean" (or taken from it), named after what they change, so that they keep
    # meaning the same when DEFAULT_PARAMS changes again.
    "lean+encoder": {**LEAN, "encoder_weight": 0.3},
    "lean+nb": {**LEAN, "nb_alpha": 0.07},
    "lean+style": {**LEAN, "style_weight": 0.1},
    "lean+unmask": {**LEAN, "unmask": True},
    "lean+word1-2": {**LEAN, "word_ngram_range": (1, 2)},
    "lean+char3-5": {**LEAN, "char_ngram_range": (3, 5)},
    "lean-normalize": {**LEAN, "normalize": False},
    "lean-domain_adaptation": {**LEAN, "domain_adaptation": False},
    "-domain_adaptation": {"domain_adaptation": False},
    "-normalize": {"normalize": False, "unmask": False},
    "char2-5": {"char_ngram_range": (2, 5)},
    "word1-3": {"word_ngram_range": (1, 3)},
    # Not a pipeline parameter: `domain_of` renames the readers' domains before fitting. GAHD trains as its own
    # domain (moderation/ml/data.py); this trains it as comments, the served domain, instead.
    "gahd_as_comment": {"domain_of": {"gahd": "comment"}},
}
_WORDS = re.compile(r"\w+")


def recipe_params(name: str) -> dict[str, Any]:
    """Return the full hyper-parameters of a named recipe, tuples as lists (as stored in JSON)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in {**DEFAULT_PARAMS, **RECIPES[name]}.items()}


def _key(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_inputs(data_dir: Path, suite_path: Path) -> tuple[dict, list, dict]:
    """Read the four corpora and the suite; return (corpora, cases, the JSON header describing them)."""
    corpora = {name: read_dataset(data_dir / rel) for name, rel in CORPORA.items()}
    corpora["team"] = read_dataset(TEAM)
    cases = read_cases(suite_path)
    cells = {}
    for cell, (train, test) in CELLS.items():
        seen = {_key(t) for name in train for t in corpora[name].texts}
        keep = [i for i, text in enumerate(corpora[test].texts) if _key(text) not in seen]
        cells[cell] = {"train": list(train), "test": test, "rows": keep,
                       "dropped": len(corpora[test].texts) - len(keep)}
    seen = {_key(t) for name in (*TRAINABLE, "team") for t in corpora[name].texts}
    cells[SUITE] = {"train": [*TRAINABLE, "team"], "test": SUITE, "rows": list(range(len(cases))),
                    "in_training": sorted(c.id for c in cases if _key(c.text) in seen)}
    header = {
        "data": {name: {"path": CORPORA.get(name, str(TEAM.relative_to(ROOT))), "sha256": d.sources[0]["sha256"],
                        "rows": len(d.texts), "labels": d.labels} for name, d in corpora.items()},
        "suite": {"path": str(suite_path), "sha256": _sha256(suite_path), "ids": [c.id for c in cases],
                  "categories": [c.category for c in cases], "labels": [c.label for c in cases]},
        "cells": cells,
        "threshold": DECISION_THRESHOLD,
    }
    return corpora, cases, header


def _fit_and_score(params: dict, seed: int, texts: list[str], labels: list[int], domains: list[str],
                   held_out: list[str]) -> tuple[list[float], float]:
    started = time.perf_counter()
    pipeline = build_pipeline(resolve_params(len(texts), params), seed=seed)
    fit_pipeline(pipeline, texts, np.asarray(labels), domains)
    scores = pipeline.predict_proba(held_out)[:, 1]
    return [round(float(s), 6) for s in scores], round(time.perf_counter() - started, 1)


def _job(recipe: str, seed: int, cell: str, corpora: dict, cases: list, header: dict):
    spec = header["cells"][cell]
    texts, labels, domains = [], [], []
    for name in spec["train"]:
        texts += corpora[name].texts
        labels += corpora[name].labels
        domains += corpora[name].domains
    source = [c.text for c in cases] if cell == SUITE else corpora[spec["test"]].texts
    held_out = [source[i] for i in spec["rows"]]
    params = dict(RECIPES[recipe])
    rename = params.pop("domain_of", {})
    domains = [rename.get(d, d) for d in domains]
    scores, seconds = _fit_and_score(params, seed, texts, labels, domains, held_out)
    return recipe, seed, cell, {"scores": scores, "seconds": seconds}


def _cv(recipe: str, seed: int, corpora: dict, jobs: int) -> dict[str, float]:
    from moderation.ml.metrics import shared_task_macro_f1

    out = {}
    for name in TRAINABLE:
        d = corpora[name]
        params = resolve_params(len(d.texts), {k: v for k, v in RECIPES[recipe].items() if k != "domain_of"})
        oof, _ = out_of_fold_scores(d.texts, d.labels, d.groups, params, seed=seed, n_jobs=jobs, domains=d.domains)
        out[name] = shared_task_macro_f1(d.labels, (oof >= DECISION_THRESHOLD).astype(int))
    return out


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def _same_inputs(a: dict, b: dict) -> bool:
    return ({k: v["sha256"] for k, v in a["data"].items()} == {k: v["sha256"] for k, v in b["data"].items()}
            and a["suite"]["sha256"] == b["suite"]["sha256"] and a["threshold"] == b["threshold"]
            and {c: s["rows"] for c, s in a["cells"].items()} == {c: s["rows"] for c, s in b["cells"].items()})


def run(recipes: list[str], seeds: list[int], data_dir: Path, suite_path: Path, json_path: Path, *,
        jobs: int, cv: bool, reuse: bool, say=print) -> dict:
    """Fit what is missing, write the JSON after each finished recipe, and return the stored results."""
    corpora, cases, header = load_inputs(data_dir, suite_path)
    store = {"format": 1, **header, "recipes": {}}
    if reuse and json_path.is_file():
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if _same_inputs(old, store):
            store["recipes"] = old.get("recipes", {})
        else:
            say(f"not reusing {json_path}: other data, suite or threshold")
    for name in recipes:
        entry = store["recipes"].get(name)
        if entry is None or entry["params"] != recipe_params(name):
            store["recipes"][name] = {"params": recipe_params(name), "seeds": {}}
    todo = [(r, s, cell) for r in recipes for s in seeds for cell in [*CELLS, SUITE]
            if cell not in store["recipes"][r]["seeds"].get(str(s), {})]
    size = {cell: sum(header["data"][n]["rows"] for n in spec["train"]) for cell, spec in header["cells"].items()}
    todo.sort(key=lambda job: -size[job[2]])  # longest fits first, so the last ones fill in
    left = {r: sum(1 for job in todo if job[0] == r) for r in recipes}
    say(f"{len(todo)} fits to run ({len(recipes) * len(seeds) * (len(CELLS) + 1) - len(todo)} reused), "
        f"{jobs} at a time")
    started = time.perf_counter()
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(_job)(r, s, cell, corpora, cases, header) for r, s, cell in todo)
    for recipe, seed, cell, result in results:
        store["recipes"][recipe]["seeds"].setdefault(str(seed), {})[cell] = result
        left[recipe] -= 1
        say(f"  {recipe} seed {seed} {cell}: fitted in {result['seconds']} s "
            f"({time.perf_counter() - started:.0f} s since start)")
        if not left[recipe]:
            _write(store, json_path)
    if cv:
        for name in recipes:
            for seed in seeds:
                if str(seed) not in store["recipes"][name].get("cv", {}):
                    store["recipes"][name].setdefault("cv", {})[str(seed)] = _cv(name, seed, corpora, jobs)
                    say(f"  {name} seed {seed}: within-corpus CV done")
    store.update(created_at=datetime.now(UTC).isoformat(timespec="seconds"), git_commit=_git_commit())
    _write(store, json_path)
    return store


def _write(store: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(store, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def merge(paths: list[Path]) -> dict:
    """Return the results of several JSON files of the same inputs, later files winning per recipe."""
    store = None
    for path in paths:
        part = json.loads(path.read_text(encoding="utf-8"))
        if store is None:
            store = part
        elif not _same_inputs(store, part):
            raise SystemExit(f"{path}: other data, suite or threshold than {paths[0]}; cannot merge")
        else:
            store["recipes"].update(part["recipes"])
    return store


def _suite_on_models(model_dirs: list[Path], suite_path: Path) -> int:
    from moderation.ml import load_model

    cases = read_cases(suite_path)
    rates = {}
    for model_dir in model_dirs:
        model = load_model(model_dir)
        scores = model.predict_proba([c.text for c in cases])
        rates[model.version] = pass_rates(cases, scores, model.decision_threshold)
    print(f"suite: share of cases passed per category ({suite_path.name}, {len(cases)} cases), "
          "each model at its own decision threshold")
    print(format_pass_rates(rates))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the shift evaluation for the chosen recipes and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of the four corpora")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="functional suite (JSON lines)")
    parser.add_argument("--recipe", action="append", help="recipe name (repeatable; 'all' for every one)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds, from --seed (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="fits at a time (default 2)")
    parser.add_argument("--cv", action="store_true", help="add within-corpus grouped CV (slow)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"scores file (default {DEFAULT_JSON})")
    parser.add_argument("--reuse", action="store_true", help="take cells already in --json for the same inputs")
    parser.add_argument("--from-json", type=Path, action="append", help="print the table from stored scores only")
    parser.add_argument("--replicates", type=int, default=REPLICATES, help="bootstrap resamples")
    parser.add_argument("--list-recipes", action="store_true")
    parser.add_argument("--model", type=Path, action="append",
                        help="score only the suite with a stored model folder, at its decision threshold (repeatable)")
    args = parser.parse_args(argv)
    if args.model:
        return _suite_on_models(args.model, args.suite)
    if args.list_recipes:
        for name, change in RECIPES.items():
            print(f"{name:20s} {change or 'DEFAULT_PARAMS of moderation/ml/pipeline.py'}")
        return 0
    names = args.recipe or ["current", "plain"]
    if "all" in names:
        names = list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown and not args.from_json:
        parser.error(f"unknown recipe {', '.join(unknown)}; see --list-recipes")
    if args.from_json:
        store = merge(args.from_json)
        names = [n for n in (names if args.recipe else store["recipes"]) if n in store["recipes"]]
    else:
        missing = [rel for rel in CORPORA.values() if not (args.data_dir / rel).is_file()]
        if missing:
            parser.error(f"not in {args.data_dir}: {', '.join(missing)} (see ../shared/data/README.md)")
        seeds = list(range(args.seed, args.seed + args.seeds))
        store = run(names, seeds, args.data_dir, args.suite, args.json, jobs=args.jobs, cv=args.cv,
                    reuse=args.reuse, say=lambda m: print(m, file=sys.stderr, flush=True))
    summary = summarise(store, names, replicates=args.replicates)
    print(format_table(summary, store, margin=MARGIN))
    if not args.from_json:
        print(f"scores: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
