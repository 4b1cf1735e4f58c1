"""SQLite writers queue on a file lock beside the database, held from BEGIN IMMEDIATE to COMMIT/ROLLBACK."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from moderation import db as db_module
from moderation.db import begin_write, make_engine
from tests.test_bad_input import assert_error


def lock_is_free(path: Path) -> bool:
    """Whether another open file description could take the writer lock now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    yield engine
    engine.dispose()


def test_writer_holds_the_lock_until_commit_or_rollback(engine, tmp_path):
    lock = tmp_path / "w.db-writer.lock"
    with Session(engine) as session:
        begin_write(session)
        assert not lock_is_free(lock)
        session.execute(text("INSERT INTO t (v) VALUES ('a')"))
        session.commit()
        assert lock_is_free(lock)

        begin_write(session)
        assert not lock_is_free(lock)
        session.rollback()
        assert lock_is_free(lock)

        begin_write(session)
        session.execute(text("INSERT INTO t (v) VALUES ('b')"))
        with pytest.raises(IntegrityError):
            session.execute(text("INSERT INTO t (v) VALUES ('a')"))
        session.rollback()
        assert lock_is_free(lock)

        session.execute(text("SELECT count(*) FROM t"))  # readers never take it
        assert lock_is_free(lock)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t ORDER BY v")).scalars().all() == ["a"]


def test_closing_a_connection_mid_transaction_frees_the_lock(engine, tmp_path):
    session = Session(engine)
    begin_write(session)
    assert not lock_is_free(tmp_path / "w.db-writer.lock")
    session.close()
    engine.dispose()
    assert lock_is_free(tmp_path / "w.db-writer.lock")


def test_concurrent_writers_all_commit(engine):
    def write(n: int) -> None:
        for i in range(25):
            with Session(engine) as session:
                begin_write(session)
                session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{n}-{i}"})
                session.commit()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 100


def test_in_memory_database_needs_no_lock_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite://")
    with Session(engine) as session:
        begin_write(session)
        session.commit()
    assert list(tmp_path.iterdir()) == []


def test_a_writer_waiting_too_long_fails_like_sqlite(engine, monkeypatch):
    """A stuck holder (a paused CLI, a debugger) must not hang writers for ever: 'database is locked'."""
    monkeypatch.setattr(db_module, "WRITER_WAIT_SECONDS", 0.2)
    with Session(engine) as holder, Session(engine) as waiter:
        begin_write(holder)
        with pytest.raises(OperationalError, match="database is locked"):
            begin_write(waiter)
        holder.rollback()
        begin_write(waiter)  # free again: the failed waiter's session is still usable
        waiter.execute(text("INSERT INTO t (v) VALUES ('after')"))
        waiter.commit()


def test_a_lock_file_that_cannot_be_opened_falls_back_to_sqlites_waiting(engine):
    with Session(engine) as session:
        raw = session.connection().connection.dbapi_connection
        raw.lock_path = "/nonexistent-folder/w.db-writer.lock"
        session.rollback()
        begin_write(session)
        session.execute(text("INSERT INTO t (v) VALUES ('x')"))
        session.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t")).scalars().all() == ["x"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_database_is_a_503_to_retry_and_stores_nothing(client, auth, count_rows, database_url,
                                                                 monkeypatch):
    monkeypatch.setattr(db_module, "WRITER_WAIT_SECONDS", 0.2)
    before = count_rows()
    other = make_engine(database_url)
    try:
        with Session(other) as holder:
            begin_write(holder)  # another process's long write transaction
            answer = client.post("/v1/articles/a-1/comments", headers=auth["backend"],
                                 json={"author_id": "l1", "author_name": "L", "text": "Guter Artikel."})
            holder.rollback()
    finally:
        other.dispose()
    assert_error(answer, 503, "database_unavailable")
    assert int(answer.headers["Retry-After"]) > 0
    assert count_rows() == before
    again = client.post("/v1/articles/a-1/comments", headers=auth["backend"],
                        json={"author_id": "l1", "author_name": "L", "text": "Guter Artikel."})
    assert again.status_code == 201
