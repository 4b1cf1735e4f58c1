"""`db`: create and migrate the database."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from sqlalchemy.engine import make_url

from moderation.cli.common import cli_config
from moderation.migrations import alembic_config


@click.group()
def db() -> None:
    """Create and migrate the database named by MODERATION_DATABASE_URL."""


def _config():
    url = cli_config()["DATABASE_URL"]
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return alembic_config(url)


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Create the database or migrate it to the latest schema."""
    command.upgrade(_config(), revision)
    click.echo(f"database at revision {revision}", err=True)


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the database back to REVISION."""
    command.downgrade(_config(), revision)


@db.command()
def current() -> None:
    """Print the database's current revision."""
    command.current(_config())


@db.command()
@click.option("-m", "--message", required=True, help="What the migration changes.")
def revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database (developers)."""
    command.revision(_config(), message=message, autogenerate=True)
