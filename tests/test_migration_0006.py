"""Migration 0006: key names become unique (existing duplicates renamed), server-side web sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text

from moderation.db import make_engine
from moderation.migrations import alembic_config
from tests.conftest import POSTGRES_URL, scratch_postgres_database

LONG = "n" * 100
# (id, name) as an older version let them be created: duplicates, and a name the renaming would produce.
KEYS = [(1, "anna"), (2, "bernd"), (3, "anna"), (4, "anna-5"), (5, "anna"), (6, LONG), (7, LONG), (8, "bernd ")]
RENAMED = {1: "anna", 2: "bernd", 3: "anna-3", 4: "anna-5", 5: "anna-5-5", 6: LONG, 7: "n" * 98 + "-7",
           8: "bernd "}


@pytest.fixture(params=["sqlite", "postgres"])
def database_at_0005(request, tmp_path):
    """A database migrated to 0005 holding keys with duplicate names."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        scratch = None
    else:
        if not POSTGRES_URL:
            pytest.skip("PostgreSQL tests skipped: set MODERATION_TEST_POSTGRES_URL (`.ci/run` does)")
        scratch = scratch_postgres_database("moderation_0006")
        url = scratch.__enter__()
    command.upgrade(alembic_config(url), "0005")
    engine = make_engine(url)
    with engine.begin() as conn:
        for key_id, name in KEYS:
            conn.execute(text("INSERT INTO api_keys (id, name, role, token_hash, prefix, created_at) "
                              "VALUES (:id, :name, 'moderator', :hash, 'mk_x', :created)"),
                         {"id": key_id, "name": name, "hash": f"{key_id:064d}", "created": datetime.now(UTC)})
    engine.dispose()
    yield url
    if scratch is not None:
        scratch.__exit__(None, None, None)


def names(url: str) -> dict[int, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, name FROM api_keys ORDER BY id")).all())
    finally:
        engine.dispose()


def test_upgrade_renames_duplicate_key_names_and_makes_them_unique(database_at_0005):
    command.upgrade(alembic_config(database_at_0005), "0006")
    assert names(database_at_0005) == RENAMED
    engine = make_engine(database_at_0005)
    try:
        with engine.connect() as conn:
            unique = inspect(conn).get_unique_constraints("api_keys")
            assert sorted(c["column_names"] for c in unique) == [["name"], ["token_hash"]]
            assert "web_sessions" in inspect(conn).get_table_names()
        with pytest.raises(Exception, match="(?i)unique"), engine.begin() as conn:
            conn.execute(text("INSERT INTO api_keys (name, role, token_hash, prefix, created_at) "
                              "VALUES ('anna', 'admin', :hash, 'mk_y', :created)"),
                         {"hash": "f" * 64, "created": datetime.now(UTC)})
    finally:
        engine.dispose()


def test_downgrade_keeps_the_new_names(database_at_0005):
    config = alembic_config(database_at_0005)
    command.upgrade(config, "0006")
    command.downgrade(config, "0005")
    assert names(database_at_0005) == RENAMED
    engine = make_engine(database_at_0005)
    try:
        with engine.connect() as conn:
            unique = inspect(conn).get_unique_constraints("api_keys")
            assert [c["column_names"] for c in unique] == [["token_hash"]]
            assert "web_sessions" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
