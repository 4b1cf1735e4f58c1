"""The database: one engine per process, one session per request or command."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy import exc as exc_module
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


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


# How long a writer waits for another before it fails, as SQLite's busy_timeout below.
WRITER_WAIT_SECONDS = 10.0


class _SQLiteConnection(sqlite3.Connection):
    """A pysqlite connection that queues writers on a file lock (flock) beside the database.

    SQLite's own busy handler makes a blocked writer sleep 1, 2, 5, 10 ... ms before it looks again,
    however soon the lock is free: with two gunicorn workers writing, most waits were sleeps. A
    writer takes this lock before BEGIN IMMEDIATE and drops it after COMMIT or ROLLBACK; a waiting
    one looks again after 50 µs, doubling up to 1 ms, and gives up like SQLite after
    `WRITER_WAIT_SECONDS` ("database is locked"). The kernel drops the lock if a process dies.
    SQLite's locking still guards the data; writers that do not use this lock (sqlite3 shell,
    migrations) only wait the old way.
    """

    lock_path: str | None = None
    _lock_fd: int | None = None
    _locked = False

    def lock_writer(self) -> None:
        """Wait for the writer lock (no-op for an in-memory database or a lock file we may not open)."""
        if self.lock_path is None or self._locked:
            return
        if self._lock_fd is None:
            try:  # flock needs no write access: a lock file created by another user still works
                self._lock_fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                self.lock_path = None  # SQLite's own waiting only
                return
        deadline, pause = None, 0.00005
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + WRITER_WAIT_SECONDS
                elif now > deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked (waited {WRITER_WAIT_SECONDS:.0f} s for the writer lock)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)
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
    # Deleted and overwritten content is zeroed, not left in free space where an erased text could be read.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(WRITER_WAIT_SECONDS * 1000)}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer starts IMMEDIATE so that it queues for the lock up front: a deferred transaction that
    # read first and then tries to write can fail at once with SQLITE_BUSY under concurrency.
    if not conn.get_execution_options().get("sqlite_immediate"):
        conn.exec_driver_sql("BEGIN")
        return
    dbapi_connection = conn.connection.dbapi_connection
    try:
        dbapi_connection.lock_writer()
    except sqlite3.OperationalError as exc:  # raised as SQLAlchemy would have raised SQLite's own timeout
        raise exc_module.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        dbapi_connection.rollback()  # nothing to roll back; drops the writer lock
        raise


# What SQLite (SQLITE_FULL, also for its page limit) and PostgreSQL (disk_full, or ENOSPC while writing WAL)
# say when there is no room left for a write.
_FULL_MESSAGES = ("database or disk is full", "could not extend file", "no space left on device")


def storage_full(error: BaseException) -> bool:
    """Whether a database error says the disk (or SQLite's page limit) is full."""
    orig = getattr(error, "orig", None) or error
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or getattr(orig, "sqlstate", None) == "53100":
        return True
    return any(message in str(orig).lower() for message in _FULL_MESSAGES)


def database_unavailable(error: exc_module.DBAPIError) -> bool:
    """Whether a database error is transient (connection lost or refused, SQLite locked, disk full): a 503 to retry."""
    reason = str(error.orig).lower()
    return (bool(error.connection_invalidated) or "connect" in reason or "database is locked" in reason
            or storage_full(error))


# How long /readyz reports a full database after the last write refused for lack of space. A write that
# succeeds ends it at once; an instance the load balancer took out of rotation gets no writes, so it is
# tried again after this long.
FULL_HOLD_SECONDS = 30.0


class StorageState:
    """When this process last saw a write refused for lack of space on one engine's database."""

    def __init__(self) -> None:
        self._full_at: float | None = None
        self._lock = threading.Lock()

    def note_full(self) -> None:
        """Record a write refused for lack of space."""
        with self._lock:
            first, self._full_at = self._full_at is None, time.monotonic()
        if first:
            log.error("database_full", extra={"detail": "writes are refused for lack of space"})

    def note_write(self) -> None:
        """Record a committed write: there is room again."""
        with self._lock:
            was_full, self._full_at = self._full_at is not None, None
        if was_full:
            log.info("database_writable", extra={"detail": "a write succeeded after the database was full"})

    def full(self) -> bool:
        """Whether writes were refused for lack of space within the last FULL_HOLD_SECONDS."""
        full_at = self._full_at
        return full_at is not None and time.monotonic() - full_at < FULL_HOLD_SECONDS


_STORAGE: weakref.WeakKeyDictionary[Engine, StorageState] = weakref.WeakKeyDictionary()


def storage_state(engine: Engine) -> StorageState:
    """Return the storage state of `engine`'s database in this process."""
    return _STORAGE.setdefault(engine, StorageState())


def _note_storage_error(context: Any) -> None:
    if storage_full(context.original_exception) and context.engine is not None:
        storage_state(context.engine).note_full()


# `Session.info` flag: this transaction is a use case's write; its commit shows the database has room.
WRITING = "writing"


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer; call before a use case's first read or change."""
    if session.get_bind().dialect.name != "sqlite":
        session.info[WRITING] = True
        return
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("begin_write called after changes were made")
        session.commit()  # ends a read-only transaction (e.g. the API key lookup); nothing is written
    session.info[WRITING] = True
    session.connection(execution_options={"sqlite_immediate": True})


def compact_after_erasure(session: Session) -> None:
    """On SQLite, copy the write-ahead log into the database and truncate it; call after committing an erasure.

    The log keeps the pages as they were before each change until it is reset; with `secure_delete` the
    database file itself holds no erased content. A reader still open elsewhere keeps the log in use:
    then it is truncated by a later checkpoint, and this says so in the log.
    """
    engine = session.get_bind()
    if engine.dialect.name != "sqlite":
        return
    connection = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        cursor = connection.cursor()
        busy, frames, copied = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
    finally:
        connection.close()
    if busy:
        log.warning("wal_checkpoint_busy", extra={"detail": f"{copied} of {frames} frames copied; "
                                                            "a reader kept the log in use"})


@event.listens_for(Session, "after_commit")
def _note_committed_write(session: Session) -> None:
    if session.info.pop(WRITING, False):
        storage_state(session.get_bind()).note_write()


@event.listens_for(Session, "after_soft_rollback")
def _forget_write(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(WRITING, None)


# `Session.info` flag: this transaction changed comments; per-process caches of them drop it on commit.
COMMENTS_CHANGED = "comments_changed"


def note_comments_changed(session: Session) -> None:
    """Record that the session's transaction changed comments, also by Core statements the ORM never sees."""
    session.info[COMMENTS_CHANGED] = True


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine for `url`, with SQLite tuned for a web server.

    Bound parameters are hidden from SQLAlchemy's exception messages: they carry comment texts, names and
    author ids, and a logged database error would otherwise print them.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"check_same_thread": False, "factory": _SQLiteConnection})
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            lock_path = f"{os.path.abspath(database)}-writer.lock"
            event.listen(engine, "connect", lambda dbapi_connection, _record: setattr(
                dbapi_connection, "lock_path", lock_path))
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               hide_parameters=True)
    event.listen(engine, "handle_error", _note_storage_error)
    return engine


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

    def storage_full(self) -> bool:
        """Whether this app's database recently refused writes for lack of space."""
        return storage_state(self.engine).full()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error (CLI, scripts)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
