"""Start-up refusals and migrations."""

from __future__ import annotations

import json
import shutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from moderation import create_app
from moderation.cli import cli
from moderation.config import ConfigError
from moderation.db import Base, make_engine
from moderation.ml import ModelError
from tests.conftest import POSTGRES_URL, scratch_postgres_database


def test_missing_model_refuses_to_start(tmp_path):
    with pytest.raises(ModelError, match="no-model"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "MODEL_DIR": str(tmp_path / "no-model")})


def test_hash_mismatch_refuses_to_start(tmp_path, tiny_model_dir):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    artifact = broken / metadata["artifact"]["file"]
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(ModelError, match="SHA-256"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "MODEL_DIR": str(broken)})


@pytest.mark.parametrize(("layout", "message"), [
    ("misnamed", "should hold version 2020.01.01-abcdef0 but its metadata says"),
    ("missing", "model folder not found: .*2020.01.01-abcdef0"),
    ("tampered", "SHA-256"),
])
def test_a_store_whose_serving_version_is_unusable_refuses_to_start(tmp_path, tiny_model_dir, layout, message):
    store = tmp_path / "models"
    folder = store / "versions" / "2020.01.01-abcdef0"
    if layout != "missing":
        shutil.copytree(tiny_model_dir, folder)
    if layout == "tampered":
        meta = json.loads((folder / "metadata.json").read_text())
        (folder / "metadata.json").write_text(json.dumps({**meta, "version": "2020.01.01-abcdef0"}))
        (folder / "model.joblib").write_bytes((folder / "model.joblib").read_bytes() + b"!")
    store.mkdir(exist_ok=True)
    (store / "CURRENT").write_text("2020.01.01-abcdef0\n")
    with pytest.raises(ModelError, match=message):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "MODEL_DIR": str(tiny_model_dir),
                    "MODEL_STORE": str(store)})


def test_production_needs_secret_and_database(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("MODERATION_ENV", "production")
    monkeypatch.setenv("MODERATION_MODEL_DIR", str(tiny_model_dir))
    with pytest.raises(ConfigError, match="MODERATION_SECRET_KEY and MODERATION_DATABASE_URL"):
        create_app()


def test_inverted_thresholds_refuse_to_start(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="APPROVE_THRESHOLD"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "MODEL_DIR": str(tiny_model_dir),
                    "APPROVE_THRESHOLD": 0.9, "REJECT_THRESHOLD": 0.1})


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path):
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests skipped: set MODERATION_TEST_POSTGRES_URL (`.ci/run` does)")
    with scratch_postgres_database("moderation_migrate") as url:
        yield url


def test_db_upgrade_creates_schema_matching_models(empty_database, monkeypatch):
    from click.testing import CliRunner
    monkeypatch.setenv("MODERATION_DATABASE_URL", empty_database)
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert {"articles", "comments", "moderation_actions", "api_keys"} <= set(inspect(conn).get_table_names())
    # Upgrading again is a no-op, and downgrade to base removes everything.
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["db", "downgrade", "base"]).exit_code == 0
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
