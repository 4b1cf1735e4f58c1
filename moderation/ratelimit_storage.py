"""Storages for the `limits` package behind Flask-Limiter: where the rate-limit counts live.

- `sqlite:///path`: a SQLite file that every worker process of one machine opens, so that "5 a minute"
  means 5 however gunicorn spreads the requests (`memory://` counts per process).
- `moderation-fallback://`: wraps the configured storage; while it fails (Redis down, file unwritable),
  this worker counts in its own memory instead of failing the request, and tries the storage again
  every few seconds.

Both register their URL schemes with `limits` when this module is imported.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string

from moderation.metrics import RATELIMIT_DEGRADED, RATELIMIT_FAILOVERS

log = logging.getLogger("moderation.limits")
SQLITE_PREFIX = "sqlite:///"
# Connections a process inherited through fork: never used nor closed there (SQLite forbids both), only kept
# referenced so that garbage collection does not close them either.
_inherited: list[sqlite3.Connection] = []


def sqlite_path(uri: str) -> Path:
    """Return the file of a `sqlite:///relative/path` or `sqlite:////absolute/path` URL."""
    if not uri.startswith(SQLITE_PREFIX) or len(uri) == len(SQLITE_PREFIX):
        raise ValueError(f"expected {SQLITE_PREFIX}<path>")
    return Path(uri[len(SQLITE_PREFIX):])


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite file shared by the worker processes of one machine.

    An increment is one UPSERT statement, atomic under SQLite's write lock, so concurrent workers never
    lose or double a count. The lock is held for microseconds and the file is not the main database, so
    a count never waits behind a comment being written. Nothing in it must survive a crash: commits do
    not wait for the disk (WAL, synchronous=NORMAL).
    """

    STORAGE_SCHEME = ["sqlite"]
    # A longer wait for the lock means something is wrong with the file: fail, and count in memory.
    BUSY_TIMEOUT_SECONDS = 2.0
    PURGE_EVERY_SECONDS = 60.0

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = sqlite_path(uri)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._purged_at = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return sqlite3.Error, OSError

    def _connection(self) -> sqlite3.Connection:
        # One connection per process and thread: gunicorn forks workers from a master that built the app.
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if conn is not None:
            _inherited.append(conn)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_SECONDS, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS counters "
                         "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID")
        except sqlite3.Error:
            conn.close()
            raise
        self._local.conn, self._local.pid = conn, os.getpid()
        self._opened.append(conn)
        return conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to the key's count, starting a new window of `expiry` seconds if the last one ended."""
        now = time.time()
        conn = self._connection()
        rows = conn.execute(
            "INSERT INTO counters (key, count, expires) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN expires > ?4 THEN count + ?2 ELSE ?2 END, "
            "expires = CASE WHEN expires > ?4 THEN expires ELSE ?3 END "
            "RETURNING count",
            (key, amount, now + expiry, now),
        ).fetchall()  # all rows: the statement, and with it the write lock, ends here
        if now - self._purged_at > self.PURGE_EVERY_SECONDS:
            self._purged_at = now
            conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(rows[0][0])

    def _live(self, key: str) -> tuple[int, float] | None:
        now = time.time()
        row = self._connection().execute(
            "SELECT count, expires FROM counters WHERE key = ? AND expires > ?", (key, now)).fetchone()
        return (int(row[0]), float(row[1])) if row else None

    def get(self, key: str) -> int:
        """Return the key's count in its current window (0 if none)."""
        live = self._live(key)
        return live[0] if live else 0

    def get_expiry(self, key: str) -> float:
        """Return when the key's current window ends (now if none)."""
        live = self._live(key)
        return live[1] if live else time.time()

    def check(self) -> bool:
        """Return whether the file can be opened and read."""
        try:
            self._connection().execute("SELECT 1").fetchall()
        except (sqlite3.Error, OSError):
            return False
        return True

    def reset(self) -> int | None:
        """Forget every count; return how many keys there were."""
        return self._connection().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        """Forget one key's count."""
        self._connection().execute("DELETE FROM counters WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the connections this process opened."""
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._local = threading.local()


class FallbackStorage(Storage):
    """The configured storage, or this worker's memory while that storage fails.

    A failing operation is repeated in memory, so a storage outage never fails a request; limits then hold
    per worker process. The switch is logged once per outage (not per request) and counted in
    `moderation_ratelimit_storage_failovers_total`; `moderation_ratelimit_storage_degraded` is 1 meanwhile.
    While degraded, the storage is tried again at most every `retry_seconds`, and the first success
    switches back to it (counts made in memory are not carried over).
    """

    STORAGE_SCHEME = ["moderation-fallback"]

    def __init__(self, uri: str | None = None, *, primary: str, retry_seconds: float = 5.0,
                 wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.primary = storage_from_string(primary, **options)
        self.retry_seconds = retry_seconds
        base = self.primary.base_exceptions
        self._failures = (*(base if isinstance(base, tuple) else (base,)), StorageError)
        self._memory: MemoryStorage | None = None
        self._lock = threading.Lock()
        self._degraded = False
        self._next_try = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return StorageError

    @property
    def degraded(self) -> bool:
        """Whether this worker counts in memory because the storage failed."""
        return self._degraded

    def _fallback(self) -> MemoryStorage:
        with self._lock:
            if self._memory is None:  # created on first need: its expiry timer thread must not predate a fork
                self._memory = MemoryStorage()
            return self._memory

    def _due(self) -> bool:
        """Whether a degraded worker should try the storage again now (at most every retry_seconds)."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + self.retry_seconds
            return True

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._degraded:
                return
            self._degraded = True
            self._next_try = time.monotonic() + self.retry_seconds
        log.warning("ratelimit_storage_unreachable", extra={
            "error": reason, "detail": "counting rate limits in this worker's memory until the storage answers"})
        RATELIMIT_FAILOVERS.inc()
        RATELIMIT_DEGRADED.set(1)

    def _recover(self) -> None:
        with self._lock:
            if not self._degraded:
                return
            self._degraded = False
        log.info("ratelimit_storage_recovered", extra={"detail": "counting rate limits in the storage again"})
        RATELIMIT_DEGRADED.set(0)

    def _call(self, operation: Callable[[Storage], Any]) -> Any:
        if self._degraded and not self._due():
            return operation(self._fallback())
        try:
            result = operation(self.primary)
        except self._failures as exc:
            self._fail(type(exc).__name__)
            return operation(self._fallback())
        if self._degraded:
            self._recover()
        return result

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add to a key's count."""
        return self._call(lambda storage: storage.incr(key, expiry, amount))

    def get(self, key: str) -> int:
        """Return a key's count."""
        return self._call(lambda storage: storage.get(key))

    def get_expiry(self, key: str) -> float:
        """Return when a key's window ends."""
        return self._call(lambda storage: storage.get_expiry(key))

    def reset(self) -> int | None:
        """Forget every count."""
        return self._call(lambda storage: storage.reset())

    def clear(self, key: str) -> None:
        """Forget one key's count."""
        self._call(lambda storage: storage.clear(key))

    def check(self) -> bool:
        """Probe the storage (while degraded, at most every retry_seconds); return whether it serves the counts."""
        if self._degraded and not self._due():
            return False
        try:
            healthy = bool(self.primary.check())
        except self._failures:
            healthy = False
        if healthy:
            self._recover()
        else:
            self._fail("check failed")
        return healthy

    def close(self) -> None:
        """Release the storage's connections (tests build many apps in one process)."""
        client = getattr(self.primary, "storage", None)
        if client is not None and hasattr(client, "connection_pool"):
            client.connection_pool.disconnect()
        if isinstance(self.primary, SQLiteStorage):
            self.primary.close()
