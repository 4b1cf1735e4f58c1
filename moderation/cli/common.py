"""What the CLI commands share: config, a database session without a web app, the model options, progress."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self, TextIO

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


class ProgressOutput:
    """The ml package's `Progress` callback on stderr: a bar per counted phase on a terminal, else lines.

    Lines (a log, a pipe, a test) say each message and count each phase at its start, at most every tenth
    of the way and at its end. Use it as a context manager, so that a failing command still ends its bar.
    """

    def __init__(self, stream: TextIO | None = None, *, timestamps: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.bars = self.stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            self.bars = False
        self.timestamps = timestamps
        self._phase: str | None = None
        self._bar: Any = None  # the open click progress bar
        self._tenth = -1       # the last tenth of the phase written as a line

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end_bar()

    def __call__(self, message: str, done: int | None = None, total: int | None = None, /) -> None:
        """Write a message on its own line, or count a step of a phase."""
        if done is None or total is None:
            self.end_bar()
            self._line(message)
        elif self.bars:
            self._draw(message, done, total)
        else:
            self._count(message, done, total)

    def end_bar(self) -> None:
        """Finish the bar being drawn, if any (its line stays)."""
        if self._bar is not None:
            self._bar.render_finish()
            self._bar = None
        self._phase = None

    def _draw(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self.end_bar()
            self._phase = phase
            self._bar = click.progressbar(length=total, label=phase, file=self.stream, show_pos=True)
            self._bar.render_progress()
        self._bar.update(done - self._bar.pos)
        if done >= total:
            self.end_bar()

    def _count(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self._phase, self._tenth = phase, -1
        tenth = 10 * done // total if total else 10
        if tenth > self._tenth:
            self._tenth = tenth
            self._line(f"{phase}: {done}/{total}")

    def _line(self, text: str) -> None:
        click.echo(f"[{datetime.now():%H:%M:%S}] {text}" if self.timestamps else text, file=self.stream)
