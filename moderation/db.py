"""The database: one engine per process, one session per request or command."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    """Declarative base of every table."""


class UTCDateTime(TypeDecorator[datetime]):
    """Store aware UTC datetimes; SQLite hands them back naive, so re-attach UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


class _SQLiteConnection(sqlite3.Connection):
    """A pysqlite connection that queues writers on a file lock (flock) beside the database.

    SQLite's own busy handler makes a blocked writer sleep 1, 2, 5, 10 ... ms before it looks again,
    however soon the lock is free: with two gunicorn workers writing, most waits were sleeps. A
    writer takes this lock before BEGIN IMMEDIATE and drops it after COMMIT or ROLLBACK, so the next
    one wakes the moment the lock is released. The kernel drops it if a process dies. SQLite's locking
    still guards the data; writers that do not use this lock (sqlite3 shell) only wait the old way.
    """

    lock_path: str | None = None
    _lock_fd: int | None = None
    _locked = False

    def lock_writer(self) -> None:
        """Wait for the writer lock (no-op for an in-memory database)."""
        if self.lock_path is None or self._locked:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True

    def _unlock_writer(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._unlock_writer()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._unlock_writer()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._unlock_writer()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; we emit BEGIN ourselves (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the one writer; busy_timeout makes a writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer starts IMMEDIATE so that it queues for the lock up front: a deferred transaction that
    # read first and then tries to write can fail at once with SQLITE_BUSY under concurrency.
    if not conn.get_execution_options().get("sqlite_immediate"):
        conn.exec_driver_sql("BEGIN")
        return
    dbapi_connection = conn.connection.dbapi_connection
    dbapi_connection.lock_writer()
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        dbapi_connection.rollback()  # nothing to roll back; drops the writer lock
        raise


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer; call before a use case's first read or change."""
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("begin_write called after changes were made")
        session.commit()  # ends a read-only transaction (e.g. the API key lookup); nothing is written
    session.connection(execution_options={"sqlite_immediate": True})


# `Session.info` flag: this transaction changed comments; per-process caches of them drop it on commit.
COMMENTS_CHANGED = "comments_changed"


def note_comments_changed(session: Session) -> None:
    """Record that the session's transaction changed comments, also by Core statements the ORM never sees."""
    session.info[COMMENTS_CHANGED] = True


def sqlite_file(engine: Engine) -> str | None:
    """Return the path of the engine's SQLite database file, or None (another database, or in memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


class Checkpointer(threading.Thread):
    """Runs SQLite's WAL checkpoints in the background, off the requests' path (see start_background_checkpoints)."""

    def __init__(self, path: str, interval: float) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self.path, self.interval = path, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("moderation.db")
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=1000")
        try:
            while not self.stopped.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or a hiccup: the next round tries again
                    log.warning("wal_checkpoint_failed", extra={"error": str(exc)})
        finally:
            connection.close()

    def stop(self) -> None:
        """End the thread after its current round."""
        self.stopped.set()
        self.join()


def start_background_checkpoints(engine: Engine, interval: float = 1.0) -> Checkpointer | None:
    """Move SQLite's WAL checkpoints out of the requests: a thread of this process runs them.

    By default the commit that fills the WAL past 1,000 pages copies it into the database and
    fsyncs while it holds the write lock: every few hundred submissions one waited 5-20 ms, and the
    writers behind it with it. Connections opened after this call do not checkpoint; the thread runs
    a PASSIVE checkpoint (it never blocks writers or readers) every `interval` seconds. Meant for
    servers (gunicorn.conf.py starts one per worker); short-lived commands keep SQLite's default.
    Returns the running thread, or None for a database that is not a SQLite file.
    """
    path = sqlite_file(engine)
    if path is None:
        return None
    event.listen(engine, "connect", _no_autocheckpoint)
    checkpointer = Checkpointer(path, interval)
    checkpointer.start()
    return checkpointer


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine for `url`, with SQLite tuned for a web server."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "factory": _SQLiteConnection})
        if (path := sqlite_file(engine)) is not None:
            lock_path = f"{path}-writer.lock"
            event.listen(engine, "connect", lambda dbapi_connection, _record: setattr(
                dbapi_connection, "lock_path", lock_path))
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


class Database:
    """Flask extension: an engine per app and a session per request, found through `current_app`."""

    def init_app(self, app: Flask) -> None:
        """Bind to `app`: build the engine and remove the session after each request."""
        engine = make_engine(app.config["DATABASE_URL"], pool_size=app.config["DB_POOL_SIZE"])
        session = scoped_session(sessionmaker(engine, expire_on_commit=False))
        app.extensions["moderation.db"] = (engine, session)

        @app.teardown_appcontext
        def _remove_session(exc: BaseException | None) -> None:
            if exc is not None:
                session.rollback()
            session.remove()

    @property
    def engine(self) -> Engine:
        return current_app.extensions["moderation.db"][0]

    @property
    def session(self) -> Session:
        """The session of the current request (or app context)."""
        return current_app.extensions["moderation.db"][1]()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error (CLI, scripts)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
