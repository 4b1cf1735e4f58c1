"""`webhooks`: the worker that delivers status events to the news site, and its log."""

from __future__ import annotations

import os
import socket
import time

import click

from moderation.cli.common import cli_config
from moderation.config import split_list
from moderation.db import make_engine
from moderation.services import webhooks as service


def settings_from(config: dict) -> service.WebhookSettings:
    """Read the webhook settings; refuse to run without endpoints or secrets."""
    urls, secrets = split_list(config["WEBHOOK_URLS"]), split_list(config["WEBHOOK_SECRETS"])
    if not urls:
        raise click.ClickException("set MODERATION_WEBHOOK_URLS to the endpoints that should receive events")
    if not secrets:
        raise click.ClickException("set MODERATION_WEBHOOK_SECRETS: events are always signed")
    return service.WebhookSettings(urls, secrets, timeout=config["WEBHOOK_TIMEOUT"],
                                   connect_timeout=config["WEBHOOK_CONNECT_TIMEOUT"],
                                   max_attempts=config["WEBHOOK_MAX_ATTEMPTS"])


@click.group()
def webhooks() -> None:
    """Deliver signed status events to the news site."""


@webhooks.command()
@click.option("--once", is_flag=True, help="One round, then exit (cron, tests).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between rounds.")
@click.option("--batch", default=50, show_default=True, help="Deliveries per round.")
def deliver(once: bool, interval: float, batch: int) -> None:
    """Run the delivery worker; several may run at once, they never send the same event twice at once."""
    config = cli_config()
    settings = settings_from(config)
    engine = make_engine(config["DATABASE_URL"])
    worker = f"{socket.gethostname()}:{os.getpid()}"
    from sqlalchemy.orm import Session

    client = service.HttpClient(settings)  # kept for the worker's life: connections are reused between rounds
    try:
        while True:
            with Session(engine, expire_on_commit=False) as session:
                outcomes = service.deliver_once(session, settings, worker, batch=batch, send=client.post)
            if outcomes:
                click.echo(" ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), err=True)
            if once:
                return
            if not outcomes:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        engine.dispose()


@webhooks.command("log")
@click.option("--limit", default=20, show_default=True)
def log_(limit: int) -> None:
    """Show the latest deliveries: event, endpoint, state, attempts, last answer."""
    config = cli_config()
    engine = make_engine(config["DATABASE_URL"])
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        for delivery, event in service.delivery_log(session, limit=limit):
            answer = delivery.last_status_code or delivery.last_error or "-"
            click.echo(f"{delivery.id:>6}  {event.type:<18} comment {event.payload['comment_id']:<8} "
                       f"{delivery.state:<9} attempts={delivery.attempts:<3} last={answer}  {delivery.url}")
    engine.dispose()
