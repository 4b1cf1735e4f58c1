"""SQLite writers queue on a file lock beside the database, held from BEGIN IMMEDIATE to COMMIT/ROLLBACK."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moderation.db import begin_write, make_engine, start_background_checkpoints


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


def test_background_checkpoints_move_the_wal_into_the_database(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    checkpointer = start_background_checkpoints(engine, interval=0.05)
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0  # requests never checkpoint
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                                 "INSERT INTO t (v) SELECT printf('%.2000c', 'x') FROM n")
        database = tmp_path / "c.db"
        deadline = time.monotonic() + 30
        while database.stat().st_size < 3000 * 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.stat().st_size >= 3000 * 2000  # the rows reached the database file, not only the WAL
    finally:
        checkpointer.stop()
        engine.dispose()


def test_no_checkpointer_for_postgres_or_memory():
    assert start_background_checkpoints(make_engine("sqlite://")) is None
    assert start_background_checkpoints(make_engine("postgresql+psycopg://u@127.0.0.1:1/none")) is None
