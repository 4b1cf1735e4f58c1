"""`python -m moderation`: the command line of operators and the data team."""

from __future__ import annotations

import click

from moderation.cli.db import db
from moderation.cli.keys import keys
from moderation.cli.ml import evaluate, score, train
from moderation.cli.models import models, retrain
from moderation.cli.webhooks import webhooks


@click.group()
def cli() -> None:
    """Kommentare moderation service."""


for command in (db, keys, train, evaluate, score, retrain, models, webhooks):
    cli.add_command(command)
