"""A scratch PostgreSQL database for a benchmark run, dropped afterwards whatever happens."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def scratch_postgres(admin_url: str, prefix: str, log: Callable[[str], None] = print) -> Iterator[str]:
    """Create `<prefix>_<pid>` on the server of `admin_url` (a libpq URL) and yield its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        info = psycopg.conninfo.conninfo_to_dict(admin_url)
        user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", "5432")
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped scratch database {name}")
