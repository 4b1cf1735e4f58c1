"""`keys`: API keys for the site's backend, moderators and admins."""

from __future__ import annotations

import click

from moderation.cli.common import cli_session
from moderation.errors import ModerationError
from moderation.models import ROLES
from moderation.services import keys as service


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command()
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--name", required=True, help="Who holds the key, e.g. 'website-backend' or 'anna'.")
def create(role: str, name: str) -> None:
    """Create a key and print its token alone on stdout (it is not shown again)."""
    try:
        with cli_session() as session:
            key, token = service.create_key(session, role=role, name=name)
    except ModerationError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created key {key.id} ({key.role}, {key.name})", err=True)
    click.echo(token)


@keys.command("list")
def list_() -> None:
    """List keys (never their tokens)."""
    with cli_session() as session:
        rows = service.list_keys(session)
        click.echo(f"{'id':>4}  {'role':<9}  {'prefix':<10}  {'created':<20}  {'revoked':<20}  name")
        for key in rows:
            revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else "-"
            click.echo(f"{key.id:>4}  {key.role:<9}  {key.prefix:<10}  "
                       f"{key.created_at:%Y-%m-%d %H:%M:%S}  {revoked:<20}  {key.name}")


@keys.command()
@click.argument("key")
def revoke(key: str) -> None:
    """Revoke the key with id or name KEY; requests with it get 401 from now on."""
    try:
        with cli_session() as session:
            revoked = service.revoke_key(session, key)
            click.echo(f"revoked key {revoked.id} ({revoked.role}, {revoked.name})")
    except ModerationError as exc:
        raise click.ClickException(exc.message) from None
