"""Training writes a complete model folder; loading checks it before trusting it."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import weakref
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import sklearn

from moderation.ml import Highlight, ModelError, Score, load_model, train_and_save
from moderation.ml.model import file_sha256
from moderation.ml.registry import ModelStore

from .conftest import OBFUSCATED, TINY, random_texts


def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _edit_metadata(model_dir, **changes):
    path = model_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def test_metadata_describes_the_model(tiny_model_dir):
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert metadata["artifact"]["file"] == "model.joblib"
    assert metadata["artifact"]["sha256"] == file_sha256(tiny_model_dir / "model.joblib")
    assert metadata["version"].endswith(metadata["artifact"]["sha256"][:7])
    assert metadata["sklearn_version"] == sklearn.__version__
    assert metadata["training_data"] == [{"path": "tiny", "rows": 12}]
    assert metadata["seed"] == 0
    assert 0 <= metadata["routing"]["approve_threshold"] <= metadata["decision_threshold"]
    assert metadata["decision_threshold"] <= metadata["routing"]["reject_threshold"] <= 1
    assert metadata["categories"]["labels"] == ["abuse", "insult", "profanity"]
    assert "hyperparameters" in metadata and "validation" in metadata


def test_loaded_model_exposes_contract(tiny_model):
    assert tiny_model.version == tiny_model.metadata["version"]
    assert tiny_model.sklearn_version_mismatch is None
    assert tiny_model.decision_threshold == tiny_model.metadata["decision_threshold"]
    score = tiny_model.score("Du bist ein Idiot")
    assert isinstance(score, Score)
    assert score.offensive == (score.toxicity >= tiny_model.decision_threshold)
    assert all(isinstance(h, Highlight) for h in score.highlights)


def test_score_matches_pipeline_on_many_strings(tiny_model):
    texts = OBFUSCATED + random_texts(200, seed=3)
    expected = tiny_model.predict_proba(texts)
    got = [s.toxicity for s in tiny_model.score_many(texts)]
    quick = [tiny_model.score(t, explain=False).toxicity for t in texts]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(quick, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("text", ["Du bist ein I d i o t!", "Ey, du 1d10t...", "Hallo @USER, Iiiiidiot",
                                  "😡 Vollidiot 😡", "Danke, sehr nett"])
def test_highlights_point_into_original_text(tiny_model, text):
    score = tiny_model.score(text)
    for h in score.highlights:
        assert text[h.start:h.end] == h.text
        assert h.weight > 0
    assert tiny_model.score(text, explain=False).highlights == ()


def test_category_only_when_offensive(tiny_model):
    for text in ["Du bist ein Idiot", "Danke für den guten Artikel", "Verpiss dich, du Penner"]:
        score = tiny_model.score(text)
        if score.offensive:
            assert score.category in ("insult", "abuse", "profanity")
        else:
            assert score.category is None


def test_training_without_categories_or_cv(tmp_path):
    metadata = train_and_save(["du idiot", "danke dir", "du depp", "schöner tag"], [1, 0, 1, 0],
                              tmp_path / "m", groups=["a", "a", "a", "a"])
    assert "skipped" in metadata["validation"]
    assert metadata["categories"]["labels"] == []
    model = load_model(tmp_path / "m")
    assert model.score("du idiot").category in (None,)


@pytest.mark.parametrize(("labels", "message"), [([1, 1], "both"), ([0, 1, 1], "labels")])
def test_training_rejects_bad_labels(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        train_and_save(["a", "b"], labels, tmp_path / "m")


def test_hash_mismatch_is_refused(tiny_model_dir, tmp_path):
    model_dir = _copy(tiny_model_dir, tmp_path)
    with open(model_dir / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="SHA-256 mismatch") as info:
        load_model(model_dir)
    assert str(model_dir / "model.joblib") in str(info.value)


class _Planted:
    """A pickle that, when unpickled, creates a folder: proof that its bytes were run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_an_artifact_swapped_right_after_hashing_is_never_unpickled(tiny_model_dir, tmp_path, monkeypatch):
    """Whoever can write the folder replaces the artifact the moment its hash has been computed; the
    loader must unpickle the bytes it hashed, not open the file again (that was code execution)."""
    from moderation.ml import model as model_module

    model_dir = _copy(tiny_model_dir, tmp_path)
    marker = tmp_path / "planted-code-ran"
    planted = tmp_path / "planted.joblib"
    joblib.dump(_Planted(marker), planted)
    swaps = []

    class SwapAfterHashing:
        def __init__(self, data: bytes = b"") -> None:
            self.digest = hashlib.sha256(data)

        def update(self, data: bytes) -> None:
            self.digest.update(data)

        def hexdigest(self) -> str:
            if not swaps:  # the attacker's moment: the hash is known, loading has not begun
                os.replace(planted, model_dir / "model.joblib")
                swaps.append(True)
            return self.digest.hexdigest()

    monkeypatch.setattr(model_module, "hashlib", SimpleNamespace(sha256=SwapAfterHashing))
    try:
        loaded = load_model(model_dir)
    finally:  # checked even when loading failed: the planted code must not have run either way
        assert swaps == [True]  # the file on disk really was swapped
        assert not marker.exists(), "the swapped-in artifact was unpickled: its code ran"
    assert loaded.version == json.loads((tiny_model_dir / "metadata.json").read_text())["version"]
    assert loaded.score("Du bist ein Idiot").offensive


def test_the_same_bytes_load_once_while_held_and_are_still_hash_checked(tiny_model_dir, tmp_path):
    model_dir = _copy(tiny_model_dir, tmp_path)
    first = load_model(model_dir)
    assert load_model(model_dir) is first
    assert load_model(_copy(tiny_model_dir, tmp_path / "other")) is not first  # another folder: its own
    with open(model_dir / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        load_model(model_dir)
    (model_dir / "model.joblib").write_bytes((tiny_model_dir / "model.joblib").read_bytes())
    _edit_metadata(model_dir, decision_threshold=0.7)  # the same artifact with other metadata: loaded anew
    assert load_model(model_dir).decision_threshold == 0.7


def test_a_dropped_model_is_freed_at_once_and_loaded_anew(tiny_model_dir, tmp_path):
    """Nothing keeps a model alive but its holders, and it holds no cycle: gunicorn workers freeze the
    cyclic collector, so a hot-reloaded-away version must go by reference counting alone."""
    model_dir = _copy(tiny_model_dir, tmp_path)
    model = load_model(model_dir)
    model.score("Du bist ein Idiot")  # fills the word cache
    gone = [weakref.ref(model), weakref.ref(model._fast), weakref.ref(model.pipeline)]
    gc.disable()
    try:
        del model
        assert [ref() for ref in gone] == [None, None, None]
        again = load_model(model_dir)
        assert again.score("Du bist ein Idiot").toxicity > 0.5
    finally:
        gc.enable()


def test_a_version_folder_must_hold_the_version_it_is_named_after(tiny_model_dir, tmp_path):
    version = json.loads((tiny_model_dir / "metadata.json").read_text())["version"]
    root = tmp_path / "root"
    store = ModelStore(root, tmp_path / "no-shipped-model")
    shutil.copytree(tiny_model_dir, root / "versions" / "2020.01.01-abcdef0")
    (root / "CURRENT").write_text("2020.01.01-abcdef0\n")
    message = f"should hold version 2020.01.01-abcdef0 but its metadata says {version}"
    for load in (load_model, lambda r: store.load_serving(), lambda r: store.load_version("2020.01.01-abcdef0")):
        with pytest.raises(ModelError, match=message):
            load(root)
    with pytest.raises(ModelError, match=message):
        store.promote("2020.01.01-abcdef0", reason="test")
    assert not (root / "HISTORY.jsonl").exists()
    (root / "versions" / "2020.01.01-abcdef0").rename(root / "versions" / version)
    store.promote(version, reason="test")
    assert load_model(root).version == store.load_serving().version == version


def test_sklearn_version_mismatch_is_reported(tiny_model_dir, tmp_path):
    model_dir = _copy(tiny_model_dir, tmp_path)
    _edit_metadata(model_dir, sklearn_version="0.24.2")
    model = load_model(model_dir)
    assert "0.24.2" in model.sklearn_version_mismatch
    assert sklearn.__version__ in model.sklearn_version_mismatch


@pytest.mark.parametrize(("breakage", "message"), [
    ("no_folder", "model folder not found"),
    ("no_metadata", "metadata.json missing"),
    ("bad_json", "metadata unreadable"),
    ("no_version", "lacks 'version'"),
    ("no_artifact", "artifact missing"),
    ("path_in_name", "invalid artifact file"),
    ("garbage_artifact", "won't load"),
])
def test_broken_model_folders_raise_model_error(tiny_model_dir, tmp_path, breakage, message):
    model_dir = _copy(tiny_model_dir, tmp_path)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    if breakage == "no_folder":
        model_dir = tmp_path / "elsewhere"
    elif breakage == "no_metadata":
        (model_dir / "metadata.json").unlink()
    elif breakage == "bad_json":
        (model_dir / "metadata.json").write_text("{not json")
    elif breakage == "no_version":
        del metadata["version"]
        (model_dir / "metadata.json").write_text(json.dumps(metadata))
    elif breakage == "no_artifact":
        (model_dir / "model.joblib").unlink()
    elif breakage == "path_in_name":
        _edit_metadata(model_dir, artifact={**metadata["artifact"], "file": "../model.joblib"})
    elif breakage == "garbage_artifact":
        (model_dir / "model.joblib").write_bytes(b"not a joblib file")
        sha = file_sha256(model_dir / "model.joblib")
        _edit_metadata(model_dir, artifact={**metadata["artifact"], "sha256": sha})
    with pytest.raises(ModelError, match=message):
        load_model(model_dir)


def test_training_is_reproducible(tmp_path, tiny_rows):
    texts, labels, categories = map(list, zip(*tiny_rows, strict=True))
    first = train_and_save(texts, labels, tmp_path / "a", categories=categories, seed=3)
    second = train_and_save(texts, labels, tmp_path / "b", categories=categories, seed=3)
    assert first["artifact"]["sha256"] == second["artifact"]["sha256"]
    assert first["decision_threshold"] == second["decision_threshold"]


def test_a_two_category_head_names_either_category(tmp_path):
    # With two categories the head has one logit (for the second); both must be reachable.
    rows = [(text, label, "insult" if category == "abuse" else category) for text, label, category in TINY]
    train_and_save([t for t, _, _ in rows], [y for _, y, _ in rows], tmp_path,
                   categories=[c for _, _, c in rows], seed=0)
    model = load_model(tmp_path)
    assert model.metadata["categories"]["labels"] == ["insult", "profanity"]
    offensive = [t for t in [t for t, y, _ in rows if y] + OBFUSCATED if model.score(t).offensive]
    expected = model.category_head.predict(model.pipeline[:-1].transform(offensive))
    got = [model.score(t).category for t in offensive]
    assert got == [str(c) for c in expected]
    assert set(got) == {"insult", "profanity"}
