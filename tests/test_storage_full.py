"""A full disk answers 503 with Retry-After (not 500) and takes the instance out of rotation while it lasts."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from moderation import db as db_module
from moderation.db import Base, database_unavailable, make_engine
from moderation.extensions import db
from moderation.services.keys import create_key
from tests.conftest import FRIENDLY

URL = "/v1/articles/artikel-1/comments"


def body(i: int) -> dict:
    return {"author_id": f"leser-{i}", "author_name": "Leserin", "text": f"{FRIENDLY[i % 7]} {'x' * 4000} {i}"}


class PageCap:
    """Caps SQLite at a number of pages for every new connection of `engine`, as a full disk would."""

    def __init__(self, engine, extra_pages: int) -> None:
        with engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
        self.engine = engine
        event.listen(engine, "connect", self._cap)
        self.pages = pages + extra_pages
        engine.dispose()  # the pool's connections were opened without the cap

    def _cap(self, dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {self.pages}")

    def lift(self) -> None:
        event.remove(self.engine, "connect", self._cap)
        self.engine.dispose()


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 512 KiB tmpfs (needs root; skipped otherwise): a real disk that fills up."""
    mount = tmp_path / "klein"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_until_refused(client, auth, count_rows) -> tuple:
    """Submit big comments until one is refused; return that response and the row counts around it."""
    for i in range(400):
        before = count_rows()
        response = client.post(URL, json=body(i), headers=auth["backend"])
        if response.status_code != 201:
            return response, before, count_rows()
    pytest.fail("the database never filled up")


def check_full_then_recovers(client, auth, count_rows, free_space) -> None:
    response, before, after = fill_until_refused(client, auth, count_rows)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "database_unavailable"
    assert set(response.json["error"]) == {"code", "message", "fields"}
    assert int(response.headers["Retry-After"]) > 0
    assert after == before  # the refused comment left nothing behind
    assert client.get("/healthz").status_code == 200  # alive: restarting would not help
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "not_ready"
    assert ready.json["database"].startswith("full")
    listing = client.get(URL)  # reading still works
    assert listing.status_code == 200 and listing.json["total"] > 0

    free_space()
    assert client.post(URL, json=body(1000), headers=auth["backend"]).status_code == 201
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["database"] == "ok"


def test_sqlite_page_limit_is_503_and_not_ready_until_a_write_succeeds(app, client, auth, count_rows, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's page limit")
    cap = PageCap(app.extensions["moderation.db"][0], extra_pages=20)
    check_full_then_recovers(client, auth, count_rows, cap.lift)


def test_a_full_disk_is_503_and_not_ready_on_a_real_tmpfs(tmpfs, tiny_model_dir, make_app):
    url = f"sqlite:///{tmpfs / 'moderation.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    app = make_app({"DATABASE_URL": url, "MODEL_DIR": str(tiny_model_dir), "APPROVE_THRESHOLD": 0.35,
                    "REJECT_THRESHOLD": 0.65, "RATELIMIT_ENABLED": False, "TESTING": True})
    with app.app_context():
        token = create_key(db.session, role="backend", name="voll")[1]
        db.session.commit()

    def count_rows() -> dict[str, int]:
        with app.app_context():
            return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}

    ballast = tmpfs / "ballast"  # what the operator deletes to make room
    ballast.write_bytes(b"\0" * 64 * 1024)
    check_full_then_recovers(app.test_client(), {"backend": {"Authorization": f"Bearer {token}"}}, count_rows,
                             ballast.unlink)


def test_not_ready_ends_after_a_while_without_writes(app, client, auth, database_url, monkeypatch):
    # An instance taken out of rotation gets no writes that could show the space is back: it is tried again.
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's page limit")
    PageCap(app.extensions["moderation.db"][0], extra_pages=0)
    statuses = [client.post(URL, json=body(i), headers=auth["backend"]).status_code for i in range(3)]
    assert 503 in statuses
    assert client.get("/readyz").status_code == 503
    monkeypatch.setattr(db_module, "FULL_HOLD_SECONDS", 0.0)
    assert client.get("/readyz").status_code == 200


FULL_ERRORS = [
    sqlite3.OperationalError("database or disk is full"),
    psycopg.errors.DiskFull('could not extend file "base/16384/16390": No space left on device'),
    psycopg.OperationalError('could not write to file "pg_wal/xlogtemp.42": No space left on device'),
]


@pytest.mark.parametrize("orig", FULL_ERRORS, ids=["sqlite", "pg-disk-full", "pg-wal"])
def test_full_disk_errors_of_both_databases_are_recognised(orig):
    error = OperationalError("INSERT INTO comments ...", {}, orig)
    assert db_module.storage_full(error) and database_unavailable(error)


@pytest.mark.parametrize("orig", [sqlite3.OperationalError("no such table: comments"),
                                  psycopg.errors.UndefinedTable('relation "comments" does not exist')])
def test_other_errors_are_not_taken_for_a_full_disk(orig):
    error = OperationalError("SELECT ...", {}, orig)
    assert not db_module.storage_full(error) and not database_unavailable(error)
