"""The model store: its layout on disk, what it serves, and what it refuses (leaving itself unchanged)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moderation.ml import ModelError, load_model, train_and_save
from moderation.ml import registry as registry_module
from moderation.ml.registry import ModelStore

from .conftest import TINY


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model folder, of another version than the tiny one."""
    folder = tmp_path_factory.mktemp("other-model")
    texts, labels, _ = zip(*TINY, strict=True)
    train_and_save(list(texts) + ["Noch ein Satz"], list(labels) + [0], folder, seed=5)
    return folder


@pytest.fixture
def store(tmp_path: Path, tiny_model_dir: Path) -> ModelStore:
    return ModelStore(tmp_path / "store", tiny_model_dir)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _version(folder: Path) -> str:
    return json.loads((folder / "metadata.json").read_text())["version"]


def test_an_empty_store_serves_the_shipped_model_without_creating_anything(store, tiny_model_dir):
    shipped = _version(tiny_model_dir)
    assert store.pointer() is None and store.serving_version() == store.shipped_version() == shipped
    assert store.load_serving().path == tiny_model_dir and store.serving_dir() == tiny_model_dir
    [info] = store.versions()
    assert (info.version, info.serving, info.shipped, info.path) == (shipped, True, True, tiny_model_dir)
    assert store.history() == [] and not store.root.exists()


def test_add_lays_out_one_folder_per_version_and_serves_nothing_yet(store, other_model):
    version = store.add(other_model)
    assert _tree(store.root) == {f"versions/{version}/metadata.json": (other_model / "metadata.json").read_bytes(),
                                 f"versions/{version}/model.joblib": (other_model / "model.joblib").read_bytes()}
    assert store.pointer() is None
    assert store.add(other_model) == version  # the same model again: nothing to do
    assert {i.version: (i.serving, i.shipped) for i in store.versions()} == {
        store.shipped_version(): (True, True), version: (False, False)}


def test_promote_writes_current_and_history_and_copies_the_shipped_model_in_when_it_serves(store, other_model):
    shipped, other = store.shipped_version(), store.add(other_model)
    entry = store.promote(other, reason="besser")
    assert (store.root / "CURRENT").read_text() == f"{other}\n"
    assert set(entry) == {"version", "previous", "at", "reason", "forced"}
    assert (entry["version"], entry["previous"], entry["reason"], entry["forced"]) == (other, shipped, "besser", False)
    assert not store.version_dir(shipped).exists()  # a reference while it does not serve
    back = store.rollback()
    assert (back["version"], back["previous"], back["reason"]) == (shipped, other, "rollback")
    assert store.load_serving().path == store.version_dir(shipped)  # now the store's own copy
    assert [json.loads(line)["version"] for line in (store.root / "HISTORY.jsonl").read_text().splitlines()] == [
        other, shipped]
    assert sorted(p.name for p in store.root.iterdir()) == ["CURRENT", "HISTORY.jsonl", "versions"]


def test_a_store_naming_the_shipped_version_it_does_not_hold_serves_the_shipped_model(store):
    store.root.mkdir()
    (store.root / "CURRENT").write_text(store.shipped_version() + "\n")
    assert store.load_serving().path == store.shipped and store.serving_dir() == store.shipped


def test_a_different_model_under_a_stored_version_name_is_refused(store, other_model, tmp_path):
    version = store.add(other_model)
    impostor = tmp_path / "impostor"
    shutil.copytree(store.shipped, impostor)
    meta = json.loads((impostor / "metadata.json").read_text())
    (impostor / "metadata.json").write_text(json.dumps({**meta, "version": version}))
    before = _tree(store.root)
    with pytest.raises(ModelError, match=f"already holds a different {version}"):
        store.add(impostor)
    assert _tree(store.root) == before


def test_a_model_that_changes_while_it_is_copied_is_not_stored(store, other_model, monkeypatch):
    real_copy = shutil.copyfile

    def copy_then_tamper(src, dst):
        real_copy(src, dst)
        if str(dst).endswith(".joblib"):
            with open(dst, "ab") as handle:
                handle.write(b"!")

    monkeypatch.setattr(registry_module.shutil, "copyfile", copy_then_tamper)
    with pytest.raises(ModelError, match="changed while it was being copied"):
        store.add(other_model)
    assert _tree(store.root) == {} and list((store.root / "versions").iterdir()) == []


def test_export_writes_a_plain_folder_that_loads_as_the_shipped_model_would(store, other_model, tmp_path):
    version = store.add(other_model)
    out = store.export(version, tmp_path / "ship" / "model")
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.joblib"]
    assert ModelStore(tmp_path / "fresh-store", out).load_serving().version == version
    with pytest.raises(ModelError, match="already exists"):
        store.export(version, out)
    assert load_model(out).version == version


GERMEVAL = [{"path": "germeval2018.training.txt", "format": "germeval2018", "sha256": "0f88" * 16, "rows": 5009,
             "offensive": 1688},
            {"path": "GermEval21_TrainData.csv", "format": "germeval2021", "sha256": "4ffb" * 16, "rows": 3244,
             "offensive": 1122}]
BASE = [{"path": "base.jsonl", "format": "jsonl", "sha256": "ab12" * 16, "rows": 200, "offensive": 80}]
DECISIONS = {"path": "database decisions", "rows": 240, "since": "2026-11-01T00:00:00+00:00"}
CV = {"method": "stratified grouped 5-fold cross-validation, seed 0", "folds": 5, "rows": 3244,
      "rows_from": "the comment rows", "at_decision_threshold": {"rows": 3244, "macro_f1": 0.6769}}
RETRAIN_CV = {**CV, "rows": 390, "rows_from": "all rows", "at_decision_threshold": {"rows": 390, "macro_f1": 0.81}}
HOLDOUT = {"excluded": True, "share": 0.2, "rule": "sha256(key)[:8] < share * 2**32"}
GATE = {"metric": "macro_f1", "candidate": 0.86, "current": 0.62, "compared_with": "2026.12.06-c2b80d2",
        "held_out_rows": 100, "held_out_decisions": 61, "compared_rows": 61,
        "compared_on": "held-out decisions only (the serving model trained on the base slice)"}
SHIPPED_CV = registry_module.Measurement(
    "macro-F1", 0.6769, "cross-validation", "stratified grouped 5-fold cross-validation, seed 0", 3244,
    "the comment rows",
    ({"name": "germeval2018.training.txt", "sha256": "0f88" * 16},
     {"name": "GermEval21_TrainData.csv", "sha256": "4ffb" * 16}))
RETRAINED_CV = registry_module.Measurement(
    "macro-F1", 0.81, "cross-validation", "stratified grouped 5-fold cross-validation, seed 0", 390, "all rows",
    ({"name": "base.jsonl", "sha256": "ab12" * 16}, {"name": "database decisions", "since": DECISIONS["since"]}))
HELD_OUT = "held out by key hash (20% of labelled items), trained on by neither model"
SITE_UNTIL = "2026-12-07T10:00:00+00:00"
SITE_DECISIONS = {"path": "database decisions", "rows": 720, "feedback_rows": 0, "until": SITE_UNTIL}
SITE_CV = {"method": "5-fold cross-fitting of the correction on the site's decisions, grouped by article", "rows": 700,
           "at_decision_threshold": {"rows": 700, "macro_f1": 0.64}, "weighted_roc_auc": 0.7}
SITE_GATE = {"metric": "weighted_roc_auc", "candidate": 0.71, "current": 0.66, "compared_with": "2026.12.06-c2b80d2",
             "compared_on": "site decisions taken since the serving model was trained", "compared_rows": 300}


@pytest.mark.parametrize(("metadata", "expected"), [
    pytest.param({"training_data": GERMEVAL, "validation": CV}, [SHIPPED_CV], id="trained: grouped CV"),
    pytest.param({"training_data": GERMEVAL, "validation": {"skipped": "too little data for cross-validation"}}, [],
                 id="too little data: no figure"),
    pytest.param({"version": "old"}, [], id="metadata from before validation was recorded"),
    pytest.param({"training_data": [*BASE, DECISIONS], "validation": RETRAIN_CV, "gate": GATE, "holdout": HOLDOUT,
                  "held_out_metrics": {"rows": 61, "macro_f1": 0.86}}, [
        registry_module.Measurement(
            "macro-F1", 0.86, "held-out decisions", f"{HELD_OUT}; {GATE['compared_on']}", 61, "held-out decisions",
            ({"name": "database decisions", "since": DECISIONS["since"]},),
            {"version": "2026.12.06-c2b80d2", "value": 0.62}),
        RETRAINED_CV], id="retrained over a model that saw the base slice: held-out decisions"),
    pytest.param({"training_data": [*BASE, DECISIONS], "validation": RETRAIN_CV, "holdout": HOLDOUT,
                  "gate": {**GATE, "compared_on": "held-out comments", "compared_rows": 80},
                  "held_out_metrics": {"rows": 80, "macro_f1": 0.84}}, [
        registry_module.Measurement(
            "macro-F1", 0.84, "held-out slice", f"{HELD_OUT}; held-out comments", 80, "held-out comments",
            RETRAINED_CV.data, {"version": "2026.12.06-c2b80d2", "value": 0.62}),
        RETRAINED_CV], id="retrained over a retrained model: held-out comments"),
    pytest.param({"training_data": [*GERMEVAL, SITE_DECISIONS], "validation": SITE_CV, "gate": SITE_GATE,
                  "site": {"corrected": True}}, [
        registry_module.Measurement(
            "weighted ROC-AUC", 0.71, "new site decisions", SITE_GATE["compared_on"], 300,
            "site decisions neither model trained on", ({"name": "database decisions", "until": SITE_UNTIL},),
            {"version": "2026.12.06-c2b80d2", "value": 0.66}),
        registry_module.Measurement(
            "macro-F1", 0.64, "cross-fitting", SITE_CV["method"], 700, "usable site decisions",
            ({"name": "database decisions", "until": SITE_UNTIL},))], id="corrected on the site's decisions"),
])
def test_each_figure_names_its_protocol_and_the_data_it_was_measured_on(metadata, expected):
    assert registry_module.measurements(metadata) == expected


def test_versions_carry_their_measurements(store, other_model):
    other = store.add(other_model)
    infos = {info.version: info for info in store.versions()}
    shipped = infos[store.shipped_version()]
    [figure] = shipped.measurements
    assert (figure.protocol, figure.rows, figure.data) == ("cross-validation", 12, ({"name": "tiny"},))
    assert (figure.metric, figure.value) == (
        "macro-F1", load_model(store.shipped).metadata["validation"]["at_decision_threshold"]["macro_f1"])
    assert [m.protocol for m in infos[other].measurements] == ["cross-validation"]
    assert infos[other].measurements[0].data == ()  # trained without naming its data
