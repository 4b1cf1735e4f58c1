"""What the CLI commands share: config and a database session without a web app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.orm import Session

from moderation.config import ConfigError, finalize, load_config
from moderation.db import make_engine, session_scope


def cli_config() -> dict[str, Any]:
    """Return the finalised configuration, or exit with the configuration error."""
    try:
        config = load_config()
        finalize(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return config


@contextmanager
def cli_session() -> Iterator[Session]:
    """Yield a committed-on-success session on the configured database."""
    config = cli_config()
    engine = make_engine(config["DATABASE_URL"])
    try:
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()
