"""The learning loop end to end: decisions in a database, retraining, the gate, promote and rollback."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from moderation.cli import cli
from moderation.extensions import db
from moderation.ml import load_model, train_and_save
from moderation.ml.registry import adopt_plain_folder, history, read_pointer
from moderation.services import articles, queue
from moderation.services.comments import NewComment, submit_comment
from moderation.services.retraining import in_holdout, retrain
from tests.conftest import FRIENDLY, TOXIC
from tests.german_corpus import friendly, toxic


@pytest.fixture
def model_root(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model root whose first version is (a copy of) the tiny model, trained on a dozen strings."""
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root)
    adopt_plain_folder(root)
    return root


@pytest.fixture
def decided(app, model_root):
    """About 300 comments, each decided by a moderator (insults rejected, the rest approved)."""
    texts = [(t, 0) for t in friendly(170, seed=1)] + [(t, 1) for t in toxic(130, seed=1)]
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
def base_file(tmp_path: Path) -> Path:
    """A small base training file in the generic JSON-lines format."""
    path = tmp_path / "base.jsonl"
    rows = [{"text": t, "label": 0} for t in friendly(120, seed=2)] + [
        {"text": t, "label": "offensive"} for t in toxic(80, seed=2)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_retrain_cli_promotes_a_better_candidate_and_writes_the_report(app, decided, model_root, base_file,
                                                                       cli_runner, tmp_path):
    before = read_pointer(model_root)
    report = tmp_path / "report"
    result = cli_runner.invoke(cli, ["retrain", "--base", str(base_file), "--model-dir", str(model_root),
                                     "--out", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["promoted"] is True and summary["gate"]["passed"] is True
    assert summary["current"] == before and read_pointer(model_root) == summary["candidate"]
    assert summary["gate"]["held_out_decisions"] > 20
    assert summary["gate"]["candidate"] >= summary["gate"]["current"] - 0.01
    for name in ("index.html", "report.json", "precision_recall.png", "automation.png"):
        assert (report / name).stat().st_size > 0
    promoted = load_model(model_root)
    assert promoted.version == summary["candidate"]
    assert promoted.metadata["routing"]["source"] == "held-out slice"
    assert promoted.metadata["gate"]["passed"] is True
    assert [h["version"] for h in history(model_root)] == [before, summary["candidate"]]
    assert "progress" not in result.stdout and "held out" in result.stderr  # progress goes to stderr


def test_thresholds_meet_the_requested_leak_on_the_slice(app, decided, model_root, base_file):
    from moderation.ml.data import read_datasets
    with app.app_context():
        result = retrain(db.session, model_root, base=read_datasets([base_file]), since=None,
                         report_dir=model_root.parent / "r", max_leak=0.05, min_reject_precision=0.9)
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


def test_gate_refuses_a_worse_candidate_and_force_records_why(app, decided, model_root, base_file):
    from moderation.ml.data import read_datasets
    base = read_datasets([base_file])
    with app.app_context():
        good = retrain(db.session, model_root, base=base, since=None, report_dir=model_root.parent / "r1")
        assert good["promoted"]
        worse = retrain(db.session, model_root, base=base, since=None, report_dir=model_root.parent / "r2",
                        trainer=shuffled_trainer)
        assert worse["promoted"] is False and worse["gate"]["passed"] is False
        assert worse["gate"]["delta"] < -0.01
        assert read_pointer(model_root) == good["candidate"]
        assert (model_root / "versions" / worse["candidate"]).is_dir()  # kept for inspection
        forced = retrain(db.session, model_root, base=base, since=None, report_dir=model_root.parent / "r3",
                         trainer=shuffled_trainer, force=True, force_reason="Test der Notfall-Freigabe")
    assert forced["promoted"] is True and read_pointer(model_root) == forced["candidate"]
    assert load_model(model_root).metadata["gate"]["reason"] == "Test der Notfall-Freigabe"
    assert history(model_root)[-1]["forced"] is True


def test_unreviewed_comments_are_not_labels(app, model_root):
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


def test_models_cli_list_promote_rollback(model_root, cli_runner, tmp_path):
    first = read_pointer(model_root)
    second_dir = tmp_path / "second"
    train_and_save(FRIENDLY + TOXIC, [0] * len(FRIENDLY) + [1] * len(TOXIC), second_dir, seed=1)
    second = json.loads((second_dir / "metadata.json").read_text())["version"]
    if second == first:
        pytest.skip("both trainings produced the same bytes")
    (model_root / "versions" / second).mkdir()
    for name in ("model.joblib", "metadata.json"):
        (second_dir / name).rename(model_root / "versions" / second / name)
    listing = cli_runner.invoke(cli, ["models", "list", "--model-dir", str(model_root)])
    assert listing.exit_code == 0 and f"* {first}" in listing.stdout and second in listing.stdout
    promoted = cli_runner.invoke(cli, ["models", "promote", second, "--model-dir", str(model_root)])
    assert promoted.exit_code == 0, promoted.output
    assert read_pointer(model_root) == second
    back = cli_runner.invoke(cli, ["models", "rollback", "--model-dir", str(model_root)])
    assert back.exit_code == 0 and read_pointer(model_root) == first
    missing = cli_runner.invoke(cli, ["models", "promote", "gibt-es-nicht", "--model-dir", str(model_root)])
    assert missing.exit_code != 0 and read_pointer(model_root) == first


def test_promote_refuses_a_tampered_version(model_root, cli_runner):
    version = read_pointer(model_root)
    artifact = model_root / "versions" / version / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"x")
    result = cli_runner.invoke(cli, ["models", "promote", version, "--model-dir", str(model_root)])
    assert result.exit_code != 0 and "SHA-256" in result.output


def test_tweets_in_the_base_train_as_their_own_domain(app, decided, model_root, tmp_path):
    """A GermEval 2018 base file is tweets: the candidate adapts from them and routes by the comments."""
    from moderation.ml.data import read_datasets
    tweets = tmp_path / "tweets.txt"
    rows = [f"{t}\tOTHER\tOTHER" for t in friendly(120, seed=4)] + [f"{t}\tOFFENSE\tINSULT" for t in toxic(80, seed=4)]
    tweets.write_text("\n".join(row.replace("\n", "|LBR|") for row in rows) + "\n", encoding="utf-8")
    base = read_datasets([tweets])
    assert set(base.domains) == {"tweet"}
    with app.app_context():
        result = retrain(db.session, model_root, base=base, since=None, report_dir=tmp_path / "r")
    candidate = load_model(model_root / "versions" / result["candidate"])
    trained = candidate.metadata["domains"]
    assert set(trained) == {"tweet", "comment"} and sum(trained.values()) == candidate.metadata["rows"]
    assert candidate.pipeline.named_steps["clf"].domains_ == ["comment", "tweet"]
    held_comments = sum(in_holdout(f"comment:{i}") for i in range(1, len(decided) + 1))
    assert result["routing"]["rows"] == held_comments
    assert result["promoted"] and result["gate"]["compared_on"].startswith("held-out decisions only")
    # The next retrain compares with a model from this loop: on the held-out comments, not the tweets.
    with app.app_context():
        again = retrain(db.session, model_root, base=base, since=None, report_dir=tmp_path / "r2")
    assert again["current"] == result["candidate"]
    assert again["gate"]["compared_on"] == "held-out comments"
    assert again["gate"]["compared_rows"] == held_comments < again["gate"]["held_out_rows"]
