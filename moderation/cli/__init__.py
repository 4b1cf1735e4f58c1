"""`python -m moderation`: the command line of operators and the data team."""

from __future__ import annotations

from typing import Any

import click

from moderation.cli.db import db
from moderation.cli.keys import keys
from moderation.cli.ml import evaluate, score, train
from moderation.cli.models import models, retrain
from moderation.cli.webhooks import webhooks
from moderation.ml.extras import TrainingPackageMissing


class CommandGroup(click.Group):
    """The command group: a package missing from a serving install ends a command with what to install."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a missing training package into an error message instead of a traceback."""
        try:
            return super().invoke(ctx)
        except TrainingPackageMissing as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=CommandGroup)
def cli() -> None:
    """Kommentare moderation service."""


for command in (db, keys, train, evaluate, score, retrain, models, webhooks):
    cli.add_command(command)
