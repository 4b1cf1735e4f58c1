"""benchmarks/shift_eval.py end to end on tiny corpora the test writes: the table's shape and its figures' range."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from tests.german_corpus import friendly, toxic
from tests.servers import ROOT

CELLS = ["GE18 <- 21+GAHD", "GE21 <- 18+GAHD", "GAHD <- 18+21", "GE19 <- 18"]
RECIPES = ["plain", "lean"]


def _rows(tag: str, seed: int) -> list[tuple[str, int]]:
    # A tag per corpus keeps the texts of different corpora apart (the script drops held-out rows that
    # equal a training row); the generators reuse their phrases across seeds. Every seventh label is
    # flipped, so that no figure is trivially perfect.
    rows = ([(f"{t} ({tag} {i})", 0) for i, t in enumerate(friendly(45, seed=seed))]
            + [(f"{t} ({tag} {i})", 1) for i, t in enumerate(toxic(30, seed=seed))])
    return [(t, 1 - y if i % 7 == 3 else y) for i, (t, y) in enumerate(rows)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Write the four corpora in their own formats, in the folder layout of ../shared/data."""
    root = tmp_path_factory.mktemp("data")
    for name in ("germeval2018", "germeval2021", "gahd", "germeval2019"):
        (root / name).mkdir()
    ge18 = _rows("Tweet", 1)
    (root / "germeval2018" / "germeval2018.training.txt").write_text(
        "".join(f"{t}\t{'OFFENSE' if y else 'OTHER'}\t{'INSULT' if y else 'OTHER'}\n" for t, y in ge18),
        encoding="utf-8")
    ge21 = _rows("Kommentar", 2)
    (root / "germeval2021" / "GermEval21_TrainData.csv").write_text(
        "comment_id,comment_text,Sub1_Toxic,Sub2_Engaging,Sub3_FactClaiming\r\n"
        + "".join(f'{i},"{t}",{y},0,0\r\n' for i, (t, y) in enumerate(ge21)), encoding="utf-8")
    gahd = _rows("Satz", 3)
    lines = [f'g{i},"{t}",{y},R1,train,{f"g{i - 45}" if y and i - 45 < 30 else ""}\n' for i, (t, y) in enumerate(gahd)]
    (root / "gahd" / "gahd_train_dev.csv").write_text(
        "gahd_id,text,label,round,split,contrastive_gahd_id\n" + "".join(lines), encoding="utf-8")
    # One GermEval 2019 tweet repeats a GermEval 2018 one: the 18 -> 19 cell must leave it out.
    ge19 = [*_rows("Spaeter", 4), ge18[0]]
    (root / "germeval2019" / "germeval2019_training_subtask12.txt").write_text(
        "".join(f"{t}\t{'OFFENSE' if y else 'OTHER'}\tOTHER\n" for t, y in ge19), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Write a small functional suite of four categories."""
    path = tmp_path_factory.mktemp("suite") / "cases.jsonl"
    cases = [("threat", "Ich weiß, wo du wohnst, du Idiot.", 1), ("threat", "Pass bloß auf, du Trottel.", 1),
             ("harmless", "Danke für den Bericht über die Radwege.", 0), ("harmless", "Wann ist die Sitzung?", 0),
             ("dialect", "Des basst scho, danke für den Artikel.", 0), ("dialect", "Schleich di, du Depp.", 1),
             ("disguised_insult", "Du I d i o t.", 1), ("disguised_insult", "Du Vollid1ot.", 1)]
    path.write_text("".join(json.dumps({"id": f"{c}-{i}", "category": c, "text": t, "label": y},
                                       ensure_ascii=False) + "\n" for i, (c, t, y) in enumerate(cases)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shift_eval():
    """Return benchmarks/shift_eval.py loaded as a module, to run its main() in this process."""
    spec = importlib.util.spec_from_file_location("shift_eval", ROOT / "benchmarks" / "shift_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/shift_eval.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _table_rows(stdout: str, names: list[str]) -> dict[str, list[list[float]]]:
    rows: dict[str, list[list[float]]] = {name: [] for name in names}
    for line in stdout.splitlines():
        for name in names:
            if line.startswith(name + " "):
                rows[name].append([float(x) for x in re.findall(r"[-+]?\d+\.\d", line[20:])])
    return rows


def test_shift_eval_prints_one_row_per_recipe_and_reuses_its_scores(data_dir, suite, tmp_path, shift_eval, capsys):
    scores = tmp_path / "scores.json"
    args = ["--data-dir", str(data_dir), "--suite", str(suite), "--json", str(scores), "--jobs", "1",
            "--replicates", "50", "--cv", *[f"--recipe={r}" for r in RECIPES]]
    done = _run(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert all(cell in out.splitlines()[0] for cell in CELLS)
    rows = _table_rows(out, RECIPES)
    # Main table: plain has primary + 4 x (F1, AUC, auto) + suite + cv; lean also its difference and se.
    assert [len(r) for r in rows["plain"]] == [15, 5] and [len(r) for r in rows["lean"]] == [17, 5]
    for name in RECIPES:
        main, categories = rows[name]
        figures = main[:1] + main[-14:-1]  # primary, F1 / AUC / auto of each cell, the suite's pass rate
        assert 50 < main[-1] <= 100  # within-corpus CV macro-F1
        assert all(0 <= x <= 100 for x in figures), main
        assert 50 < figures[0] < 100 and min(figures[2:-1:3]) > 50  # AUCs above chance, not perfect
        assert all(0 <= x <= 100 for x in categories), categories
        assert categories[-1] == pytest.approx(sum(categories[:-1]) / 4, abs=0.06)  # mean of the 4 categories
    assert "threat" in out and "disguise" in out and "harmless" in out
    assert re.search(r"se of the difference from plain \(.*\): lean \d+\.\d\d \(\d+\.\d\d / \d+\.\d\d\)", out)
    assert "GE19 <- 18 1;" in out  # the repeated tweet was left out
    stored = json.loads(scores.read_text(encoding="utf-8"))
    assert set(stored["recipes"]) == set(RECIPES)
    assert set(stored["recipes"]["plain"]["cv"]["0"]) == {"germeval2018", "germeval2021", "gahd"}
    cell = stored["recipes"]["plain"]["seeds"]["0"]["GE19 <- 18"]
    assert len(cell["scores"]) == 75 and all(0 <= s <= 1 for s in cell["scores"])
    assert stored["data"]["germeval2019"]["rows"] == 76

    assert shift_eval.main([*args, "--reuse"]) == 0
    assert "0 fits to run (10 reused)" in capsys.readouterr().err
    assert shift_eval.main(["--from-json", str(scores), "--replicates", "50"]) == 0
    assert capsys.readouterr().out.split("\nfit time")[0] == out.split("\nfit time")[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--recipe", "fancy"], "unknown recipe fancy"),
    ([], "germeval2018/germeval2018.training.txt"),
])
def test_shift_eval_refuses_a_missing_corpus_and_an_unknown_recipe(tmp_path, suite, shift_eval, capsys, args, message):
    scores = tmp_path / "scores.json"
    with pytest.raises(SystemExit) as info:
        shift_eval.main(["--data-dir", str(tmp_path), "--suite", str(suite), "--json", str(scores), *args])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not scores.exists()


def test_shift_eval_scores_the_suite_on_a_stored_model(tmp_path, suite, shift_eval, capsys):
    from moderation.ml import train_and_save

    rows = _rows("Modell", 5)
    # Without the sentence encoder: distilling it would cost most of this test's time.
    metadata = train_and_save([t for t, _ in rows], [y for _, y in rows], tmp_path / "model", seed=0,
                              params={"encoder_weight": None})
    assert shift_eval.main(["--model", str(tmp_path / "model"), "--suite", str(suite)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(metadata["version"]))
    rates = [float(x) for x in re.findall(r"\d+\.\d", row[20:])]
    assert len(rates) == 5 and all(0 <= x <= 100 for x in rates)  # four categories and their mean
    assert rates[-1] == pytest.approx(sum(rates[:4]) / 4, abs=0.06)


def test_a_recipe_may_rename_domains_before_fitting(data_dir, suite, shift_eval, monkeypatch):
    corpora, cases, header = shift_eval.load_inputs(data_dir, suite)
    seen = {}

    def fake_fit(params, seed, texts, labels, domains, held_out):
        seen.update(params=params, domains=set(domains), rows=len(texts), held_out=len(held_out))
        return [0.5] * len(held_out), 0.0

    monkeypatch.setattr(shift_eval, "_fit_and_score", fake_fit)
    monkeypatch.setitem(shift_eval.RECIPES, "renamed", {"C": 2.0, "domain_of": {"gahd": "comment"}})
    recipe, seed, cell, result = shift_eval._job("renamed", 0, "GE21 <- 18+GAHD", corpora, cases, header)
    assert (recipe, seed, cell) == ("renamed", 0, "GE21 <- 18+GAHD")
    assert seen == {"params": {"C": 2.0}, "domains": {"tweet", "comment"}, "rows": 150, "held_out": 75}
    shift_eval._job("current", 0, "GE21 <- 18+GAHD", corpora, cases, header)
    assert seen["domains"] == {"tweet", "gahd"} and seen["params"] == {}
