"""The learning loop end to end: decisions in a database, retraining, the gate, promote and rollback."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner

from moderation.cli import cli
from moderation.extensions import db
from moderation.migrations import alembic_config
from moderation.ml import load_model, train_and_save
from moderation.ml.registry import ModelStore, history, read_pointer
from moderation.services import articles, queue
from moderation.services.comments import NewComment, submit_comment
from moderation.services.retraining import in_holdout, retrain
from tests.conftest import FRIENDLY, TOXIC
from tests.german_corpus import friendly, toxic
from tests.servers import ROOT, service_env


@pytest.fixture
def store(tmp_path: Path, tiny_model_dir: Path, app_config: dict) -> ModelStore:
    """The test's empty model store (the one `app` and `cli_runner` use) over the tiny model as shipped model."""
    assert app_config["MODEL_STORE"] == str(tmp_path / "store")
    return ModelStore(tmp_path / "store", tiny_model_dir)


def _decide(app, friendly_texts: list[str], toxic_texts: list[str]) -> list[tuple[str, int]]:
    """Submit the texts and have a moderator decide each (insults rejected, the rest approved)."""
    texts = [(t, 0) for t in friendly_texts] + [(t, 1) for t in toxic_texts]
    random.Random(7).shuffle(texts)
    with app.app_context():
        serving = app.extensions["moderation.classifier"].serving
        articles.update_settings(db.session, "leserbriefe", comments_open=True, premoderation=True)
        for i, (text, label) in enumerate(texts):
            comment = submit_comment(db.session, serving.model, serving.thresholds, "leserbriefe",
                                     NewComment(author_id=f"leser-{i}", author_name="L", text=text)).comment
            queue.decide(db.session, comment.id, "anna", decision="reject" if label else "approve")
    return texts


@pytest.fixture
def decided(app, store):
    """About 300 comments, each decided by a moderator (insults rejected, the rest approved)."""
    return _decide(app, friendly(170, seed=1), toxic(130, seed=1))


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    """A small base training file in the generic JSON-lines format."""
    path = tmp_path / "base.jsonl"
    rows = [{"text": t, "label": 0} for t in friendly(120, seed=2)] + [
        {"text": t, "label": "offensive"} for t in toxic(80, seed=2)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_retrain_cli_promotes_a_better_candidate_and_writes_the_report(app, decided, store, base_file,
                                                                       cli_runner, tmp_path):
    before = store.serving_version()
    assert read_pointer(store.root) is None  # an empty store: the shipped model serves
    report = tmp_path / "report"
    result = cli_runner.invoke(cli, ["retrain", "--base", str(base_file), "--store", str(store.root),
                                     "--report", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["promoted"] is True and summary["gate"]["passed"] is True
    assert summary["current"] == before and read_pointer(store.root) == summary["candidate"]
    assert summary["gate"]["held_out_decisions"] > 20
    assert summary["gate"]["candidate"] >= summary["gate"]["current"] - 0.01
    for name in ("index.html", "report.json", "precision_recall.png", "automation.png"):
        assert (report / name).stat().st_size > 0
    promoted = load_model(store.root)
    assert promoted.version == summary["candidate"] and promoted.path == store.version_dir(summary["candidate"])
    assert promoted.metadata["routing"]["source"] == "held-out slice"
    assert promoted.metadata["gate"]["passed"] is True
    assert [(h["previous"], h["version"]) for h in history(store.root)] == [(before, summary["candidate"])]
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == [summary["candidate"]]  # no copy of shipped
    assert "progress" not in result.stdout and "held out" in result.stderr  # progress goes to stderr
    _check_listing(cli_runner, summary, before, base_file, promoted.metadata)
    # Not a terminal: each counted phase is a few time-stamped lines, ending at its total.
    ends = {match[1]: (int(match[2]), int(match[3]))
            for match in re.finditer(r"^\[\d\d:\d\d:\d\d\] (.+): (\d+)/(\d+)$", result.stderr, re.M)}
    held_out = summary["gate"]["held_out_rows"]
    distilled = ends.pop("distilling the sentence encoder", None)  # only if no test before distilled it
    assert distilled is None or distilled[0] == distilled[1] > 0
    assert ends == {
        "fitting the final model and 5 folds": (6, 6),
        f"scoring the held-out slice with the candidate {summary['candidate']}": (held_out, held_out),
        f"scoring the held-out slice with {before}": (held_out, held_out),
    }


def _check_listing(cli_runner, summary: dict, before: str, base_file: Path, metadata: dict) -> None:
    """`models list` gives each figure with its protocol and data: a retrain's held-out one, beside the figure
    the model it replaced got on the same rows, and each version's cross-validation on its own training rows."""
    listed = cli_runner.invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.stdout)
    assert shown["serving"] == summary["candidate"]
    by_version = {v["version"]: v for v in shown["versions"]}
    assert set(by_version) == {before, summary["candidate"]}
    gate, decisions = summary["gate"], {"name": "database decisions", "since": None}
    held, cv = by_version[summary["candidate"]]["measurements"]
    assert held["method"].startswith("held out by key hash (20% of labelled items), trained on by neither model; ")
    assert {key: value for key, value in held.items() if key != "method"} == {
        "macro_f1": gate["candidate"], "protocol": "held-out decisions", "rows": gate["compared_rows"],
        "rows_from": "held-out decisions", "data": [decisions],
        "compared_with": {"version": before, "macro_f1": gate["current"]}}
    base = {"name": "base.jsonl", "sha256": hashlib.sha256(base_file.read_bytes()).hexdigest()}
    assert cv == {"macro_f1": metadata["validation"]["at_decision_threshold"]["macro_f1"],
                  "protocol": "cross-validation", "method": metadata["validation"]["method"],
                  "rows": metadata["validation"]["rows"], "rows_from": "all rows", "data": [base, decisions],
                  "compared_with": None}
    assert [(m["protocol"], m["data"]) for m in by_version[before]["measurements"]] == [("cross-validation", [])]

    table = cli_runner.invoke(cli, ["models", "list"]).stdout.splitlines()
    serving = next(i for i, line in enumerate(table) if line.startswith("*"))
    assert re.fullmatch(rf"\* {summary['candidate']} +\S+ +{gate['candidate']:.4f} +held-out decisions +"
                        rf"{gate['compared_rows']} +held-out decisions of database decisions; "
                        rf"{before} scored {gate['current']:.4f} on the same rows", table[serving])
    assert re.fullmatch(rf" +{cv['macro_f1']:.4f} +cross-validation +{cv['rows']} +all rows of "
                        rf"base.jsonl \({base['sha256'][:8]}\), database decisions", table[serving + 1])


def test_thresholds_meet_the_requested_leak_on_the_slice(app, decided, store, base_file, tmp_path):
    from moderation.ml.data import read_datasets
    with app.app_context():
        result = retrain(db.session, store, base=read_datasets([base_file]), since=None,
                         report_dir=tmp_path / "r", max_leak=0.05, min_reject_precision=0.9)
    held = result["routing"]["held_out"]
    assert result["routing"]["approve_max_offensive"] == 0.05
    if held["approved_share"] > 0:
        assert held["approved_offensive_rate"] <= 0.05
    if held["rejected_share"] > 0:
        assert held["rejected_precision"] >= 0.9
    assert held["automation_rate"] == pytest.approx(held["approved_share"] + held["rejected_share"])
    assert result["routing"]["approve_threshold"] <= result["routing"]["reject_threshold"]


def shuffled_trainer(texts, labels, out_dir, **kwargs):
    """Train a real model on labels in random order: a deliberately worse candidate."""
    noise = list(labels)
    random.Random(3).shuffle(noise)
    return train_and_save(texts, noise, out_dir, **{**kwargs, "categories": None})


def test_gate_refuses_a_worse_candidate_and_force_records_why(app, decided, store, base_file, tmp_path):
    from moderation.ml.data import read_datasets
    base = read_datasets([base_file])
    with app.app_context():
        good = retrain(db.session, store, base=base, since=None, report_dir=tmp_path / "r1")
        assert good["promoted"]
        worse = retrain(db.session, store, base=base, since=None, report_dir=tmp_path / "r2",
                        trainer=shuffled_trainer)
        assert worse["promoted"] is False and worse["gate"]["passed"] is False
        assert worse["gate"]["delta"] < -0.01
        assert read_pointer(store.root) == good["candidate"]
        assert store.version_dir(worse["candidate"]).is_dir()  # kept for inspection
        forced = retrain(db.session, store, base=base, since=None, report_dir=tmp_path / "r3",
                         trainer=shuffled_trainer, force=True, force_reason="Test der Notfall-Freigabe")
    assert forced["promoted"] is True and read_pointer(store.root) == forced["candidate"]
    assert load_model(store.root).metadata["gate"]["reason"] == "Test der Notfall-Freigabe"
    assert history(store.root)[-1]["forced"] is True


def test_unreviewed_comments_are_not_labels(app):
    from moderation.services.retraining import decision_labels
    with app.app_context():
        serving = app.extensions["moderation.classifier"].serving
        submit_comment(db.session, serving.model, serving.thresholds, "a", NewComment("l", "L", FRIENDLY[0]))
        assert decision_labels(db.session) == []


def test_holdout_membership_is_fixed_by_key():
    keys = [f"comment:{i}" for i in range(2000)]
    first = [in_holdout(k) for k in keys]
    assert first == [in_holdout(k) for k in reversed(keys)][::-1]
    assert 0.15 < sum(first) / len(first) < 0.25


def _second_version(tmp_path: Path, first: str) -> tuple[Path, str]:
    """Train another tiny model into its own folder; return the folder and its version."""
    folder = tmp_path / "second"
    train_and_save(FRIENDLY + TOXIC, [0] * len(FRIENDLY) + [1] * len(TOXIC), folder, seed=1)
    version = json.loads((folder / "metadata.json").read_text())["version"]
    if version == first:
        pytest.skip("both trainings produced the same bytes")
    return folder, version


def test_models_cli_import_list_promote_rollback_export(store, cli_runner, tmp_path):
    first = store.shipped_version()
    folder, second = _second_version(tmp_path, first)
    imported = cli_runner.invoke(cli, ["models", "import", str(folder)])
    assert imported.exit_code == 0, imported.output
    assert f"stored {second}" in imported.stdout and read_pointer(store.root) is None  # stored, not served
    assert sorted(p.name for p in store.version_dir(second).iterdir()) == ["metadata.json", "model.joblib"]
    listing = cli_runner.invoke(cli, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert [line for line in lines if line.startswith("*")] == [next(line for line in lines if first in line)]
    assert f"* {first}" in listing.stdout and "shipped" in next(line for line in lines if first in line)
    assert any(second in line and "shipped" not in line for line in lines)
    assert lines[0].split() == ["VERSION", "CREATED", "MACRO-F1", "PROTOCOL", "ROWS", "MEASURED", "ON"]
    figures = {v: load_model(store.version_dir(v) if v == second else store.shipped).metadata["validation"]
               for v in (first, second)}
    for version, validation in figures.items():
        line = next(line for line in lines if version in line)
        # Trained without naming its data files: the rows are all there is to say.
        assert re.search(rf" {validation['at_decision_threshold']['macro_f1']:.4f} +cross-validation +"
                         rf"{validation['rows']}  all rows$", line)
    shown = cli_runner.invoke(cli, ["models", "list", "--json"])
    assert shown.exit_code == 0, shown.output
    assert {v["version"]: (v["serving"], v["shipped"], [(m["protocol"], m["rows"]) for m in v["measurements"]])
            for v in json.loads(shown.stdout)["versions"]} == {
        first: (True, True, [("cross-validation", figures[first]["rows"])]),
        second: (False, False, [("cross-validation", figures[second]["rows"])])}

    promoted = cli_runner.invoke(cli, ["models", "promote", second])
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.strip() == f"serving {second} (was {first})" and read_pointer(store.root) == second
    back = cli_runner.invoke(cli, ["models", "rollback"])
    assert back.exit_code == 0, back.output
    assert back.stdout.strip() == f"serving {first} (was {second})" and read_pointer(store.root) == first
    # The shipped model, once it serves from the store, is copied in: a later release may ship another.
    assert (store.version_dir(first) / "model.joblib").read_bytes() == (store.shipped / "model.joblib").read_bytes()
    assert [(h["previous"], h["version"]) for h in history(store.root)] == [(first, second), (second, first)]

    exported = cli_runner.invoke(cli, ["models", "export", second, "--out", str(tmp_path / "shipped-next")])
    assert exported.exit_code == 0, exported.output
    assert load_model(tmp_path / "shipped-next").version == second
    assert sorted(p.name for p in (tmp_path / "shipped-next").iterdir()) == ["metadata.json", "model.joblib"]


def _store_files(store: ModelStore) -> dict[str, bytes]:
    return {str(p.relative_to(store.root)): p.read_bytes() for p in store.root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("args", "message"), [
    (["models", "promote", "gibt-es-nicht"], "model folder not found"),
    (["models", "promote", "../../etc"], "invalid model version name"),
    (["models", "promote", ".candidate"], "invalid model version name"),
    (["models", "rollback"], "no earlier version recorded"),
    (["models", "rollback", "--store", "{tmp}/empty"], "serves the shipped model"),
    (["models", "export", "gibt-es-nicht", "--out", "{tmp}/out"], "model folder not found"),
    (["models", "export", "--out", "{tmp}/exists"], "already exists"),
    (["models", "import", "{tmp}/not-a-model"], "metadata.json missing"),
    (["models", "import", "{tmp}/tampered"], "SHA-256 mismatch"),
])
def test_models_cli_refusals_change_nothing(store, cli_runner, tmp_path, tiny_model_dir, args, message):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "exists").mkdir()
    shutil.copytree(tiny_model_dir, tmp_path / "tampered")
    artifact = tmp_path / "tampered" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"!")
    store.promote(store.shipped_version(), reason="a store with something in it")
    before = _store_files(store)
    result = cli_runner.invoke(cli, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code != 0 and message in result.output
    assert _store_files(store) == before
    assert not (tmp_path / "out").exists() and list((tmp_path / "exists").iterdir()) == []
    assert not (tmp_path / "empty").exists()


def test_promote_refuses_a_tampered_version(store, cli_runner):
    version = store.add(store.shipped)
    artifact = store.version_dir(version) / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"x")
    result = cli_runner.invoke(cli, ["models", "promote", version])
    assert result.exit_code != 0 and "SHA-256" in result.output
    assert read_pointer(store.root) is None and history(store.root) == []


def test_tweets_in_the_base_train_as_their_own_domain(app, decided, store, tmp_path):
    """A GermEval 2018 base file is tweets: the candidate adapts from them and routes by the comments."""
    from moderation.ml.data import read_datasets
    tweets = tmp_path / "tweets.txt"
    rows = [f"{t}\tOTHER\tOTHER" for t in friendly(120, seed=4)] + [f"{t}\tOFFENSE\tINSULT" for t in toxic(80, seed=4)]
    tweets.write_text("\n".join(row.replace("\n", "|LBR|") for row in rows) + "\n", encoding="utf-8")
    base = read_datasets([tweets])
    assert set(base.domains) == {"tweet"}
    with app.app_context():
        result = retrain(db.session, store, base=base, since=None, report_dir=tmp_path / "r")
    candidate = load_model(store.version_dir(result["candidate"]))
    trained = candidate.metadata["domains"]
    assert set(trained) == {"tweet", "comment"} and sum(trained.values()) == candidate.metadata["rows"]
    assert candidate.pipeline.named_steps["clf"].domains_ == ["comment", "tweet"]
    held_comments = sum(in_holdout(f"comment:{i}") for i in range(1, len(decided) + 1))
    assert result["routing"]["rows"] == held_comments
    assert result["promoted"] and result["gate"]["compared_on"].startswith("held-out decisions only")
    # The next retrain compares with a model from this loop: on the held-out comments, not the tweets.
    with app.app_context():
        again = retrain(db.session, store, base=base, since=None, report_dir=tmp_path / "r2")
    assert again["current"] == result["candidate"]
    assert again["gate"]["compared_on"] == "held-out comments"
    assert again["gate"]["compared_rows"] == held_comments < again["gate"]["held_out_rows"]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (outside .git) with its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.relative_to(root).parts}


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


@pytest.mark.slow
def test_retrain_promote_and_rollback_leave_the_repository_clean(tmp_path, tiny_model_dir, base_file, make_app,
                                                                 monkeypatch):
    """In a repository laid out like this one (tiny shipped model in model/), retrain, rollback and promote
    write only into the store: `git status` stays clean and no tracked file changes.

    `models` runs in the copy with no MODERATION_* variable, so its defaults place the store; `retrain` runs
    in this process (a new process would distil the sentence encoder again, about a minute) with the
    paths those defaults give in the copy.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in (".gitignore", "boot.sh", "wsgi.py", "gunicorn.conf.py"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "moderation", repo / "moderation", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(tiny_model_dir, repo / "model")
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "layout"]):
        subprocess.run(git[:3] + args if args[0] == "init" else git + args, check=True, capture_output=True)
    env = service_env(PYTHONDONTWRITEBYTECODE="1")
    env.pop("MODERATION_MODEL_STORE", None)  # no MODERATION_* at all: every default applies

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "moderation", *args], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def git_status() -> str:
        return subprocess.run(git + ["status", "--porcelain"], check=True, capture_output=True, text=True).stdout

    database = f"sqlite:///{repo / 'instance' / 'moderation.db'}"
    (repo / "instance").mkdir()
    command.upgrade(alembic_config(database), "head")
    app = make_app({"DATABASE_URL": database, "MODEL_DIR": str(tiny_model_dir),
                    "MODEL_STORE": str(tmp_path / "unused-store")})
    _decide(app, friendly(60, seed=1), toxic(40, seed=1))
    shipped = json.loads((repo / "model" / "metadata.json").read_text())["version"]
    for name, value in (("DATABASE_URL", database), ("MODEL_DIR", repo / "model"),
                        ("MODEL_STORE", repo / "instance" / "models")):
        monkeypatch.setenv(f"MODERATION_{name}", str(value))

    before = _files(repo)
    result = CliRunner().invoke(cli, ["retrain", "--base", str(base_file), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["promoted"] is True and summary["current"] == shipped
    after_retrain = _files(repo)
    assert git_status() == ""
    assert run("models", "rollback").strip() == f"serving {shipped} (was {summary['candidate']})"
    assert run("models", "promote", summary["candidate"]).strip() == f"serving {summary['candidate']} (was {shipped})"
    after = _files(repo)

    assert git_status() == ""
    tracked = set(subprocess.run(git + ["ls-files"], check=True, capture_output=True, text=True).stdout.split())
    assert "model/model.joblib" in tracked and not tracked & _changed(before, after)
    # Besides the store only the database may change (SQLite checkpoints its WAL when retrain reads it).
    allowed = ("instance/models/", "instance/moderation.db")
    assert {p for p in _changed(before, after_retrain) if not p.startswith(allowed)} == set()
    assert {p for p in _changed(after_retrain, after) if not p.startswith(allowed)} == set()
    store = repo / "instance" / "models"
    assert (store / "CURRENT").read_text().strip() == summary["candidate"]
    assert sorted(p.name for p in (store / "versions").iterdir()) == sorted([shipped, summary["candidate"]])
