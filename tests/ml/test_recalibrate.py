"""`models calibrate`: a stored model gets its out-of-fold calibration scores, the artifact untouched."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from moderation.cli import cli
from moderation.ml import load_model, train_and_save
from moderation.ml.calibration import Evidence
from moderation.ml.data import read_datasets
from moderation.ml.model import file_sha256
from tests.conftest import FRIENDLY, TOXIC

PARAMS = {"encoder_weight": None}  # the encoder's distillation costs most of a fit and adds nothing here


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A model trained on a small labelled CSV, and the metadata it was written with."""
    tmp = tmp_path_factory.mktemp("recalibrate")
    data = tmp / "kommentare.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(4):
            writer.writerows([f"{text} ({i})", 0] for text in FRIENDLY)
            writer.writerows([f"{text} ({i})", 1] for text in TOXIC)
    rows = read_datasets([data])
    model = tmp / "model"
    metadata = train_and_save(rows.texts, rows.labels, model, groups=rows.groups, domains=rows.domains,
                              sources=rows.sources, seed=3, params=PARAMS)
    return model, data, metadata


@pytest.fixture
def trained(trained_once, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A fresh copy of the trained model folder for one test."""
    model, data, metadata = trained_once
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    return copy, data, metadata


def without_calibration(model: Path) -> str:
    """Strip the calibration as a model trained before it existed would lack it; return the metadata text."""
    meta = json.loads((model / "metadata.json").read_text(encoding="utf-8"))
    meta.pop("calibration")
    text = json.dumps(meta, indent=2)
    (model / "metadata.json").write_text(text, encoding="utf-8")
    return text


def test_recomputes_the_same_calibration_and_keeps_the_artifact(trained):
    model, data, original = trained
    artifact = file_sha256(model / "model.joblib")
    without_calibration(model)
    result = CliRunner().invoke(cli, ["models", "calibrate", "--model", str(model), "--data", str(data), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((model / "metadata.json").read_text(encoding="utf-8"))
    assert meta["calibration"] == original["calibration"]
    assert meta["routing"]["approve_threshold"] == original["routing"]["approve_threshold"]
    assert file_sha256(model / "model.joblib") == artifact == meta["artifact"]["sha256"]
    assert {k: v for k, v in meta.items() if k not in ("calibration", "routing")} == {
        k: v for k, v in original.items() if k not in ("calibration", "routing")}
    assert meta["calibration"]["rows"] == {"removed": 24, "kept": 28}
    assert "seed 3" in meta["calibration"]["source"] and "kommentare.csv" in meta["calibration"]["source"]
    Evidence.from_metadata(meta["calibration"])
    assert load_model(model).version == original["version"]  # still loads: hash checked


@pytest.mark.parametrize(("case", "message"), [
    ("other_file", "differ from the model's training data"),
    ("recipe", "differs from the recorded"),
])
def test_refuses_what_is_not_the_models_recipe_and_writes_nothing(trained, tmp_path, case, message):
    model, data, _ = trained
    text = without_calibration(model)
    args = ["models", "calibrate", "--model", str(model), "--jobs", "1", "--data"]
    if case == "other_file":
        other = tmp_path / "andere.csv"
        other.write_text(data.read_text(encoding="utf-8") + "Noch ein Satz,0\n", encoding="utf-8")
        args.append(str(other))
    else:  # a model whose recorded validation the same data and seed do not reproduce
        meta = json.loads(text)
        meta["validation"]["at_decision_threshold"]["macro_f1"] -= 0.01
        text = json.dumps(meta, indent=2)
        (model / "metadata.json").write_text(text, encoding="utf-8")
        args.append(str(data))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and message in result.output
    assert (model / "metadata.json").read_text(encoding="utf-8") == text
