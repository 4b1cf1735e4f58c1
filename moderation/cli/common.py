"""What the CLI commands share: config, a database session without a web app, the model options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.orm import Session

from moderation.config import ConfigError, finalize, load_config
from moderation.db import make_engine, session_scope
from moderation.ml.registry import ModelStore


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


def model_store(store: str | None = None) -> ModelStore:
    """Return the model store (`--store`, else the configured one) over the configured shipped model."""
    config = cli_config()
    return ModelStore(store or config["MODEL_STORE"], config["MODEL_DIR"])


class OldSpellings(click.Option):
    """An option whose first name is shown by --help; the older names after it still work."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        """Describe the option under its current name only."""
        names, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names


# One name per kind of folder across every command: --model reads a model folder, --store is the model
# store, --out is a folder a command writes a model into, --report a folder it writes a report into.
def model_option(func: Callable) -> Callable:
    """Add `--model`: the model folder to read (default: the serving one)."""
    return click.option("--model", "model_dir", type=click.Path(file_okay=False),
                        help="Model folder (or store) to read; default the serving model: the store's CURRENT, "
                             "else the shipped model.")(func)


def store_option(func: Callable) -> Callable:
    """Add `--store`: the model store (old spelling `--model-dir`)."""
    return click.option("--store", "--model-dir", "store", cls=OldSpellings, type=click.Path(file_okay=False),
                        help="Model store; default $MODERATION_MODEL_STORE or instance/models/.")(func)
