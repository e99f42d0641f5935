"""``flask --app wsgi init-db``, ``create-admin`` and ``prune-requests``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from admin_app import accounts
from admin_app.extensions import db
from admin_app.services import ServiceError
from common.db import upgrade
from common.retention import prune_requests, retention_cutoff


def _upgrade() -> None:
    upgrade(current_app.config["SEADRAGON"].database_url)


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or migrate the database schema (never drops anything)."""
    _upgrade()
    click.echo("Database schema is up to date.")


@click.command("create-admin")
@click.argument("username")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (asked for, twice, when left out).",
)
@with_appcontext
def create_admin(username: str, password: str) -> None:
    """Create an administrator, or promote an existing user and reset their password."""
    _upgrade()
    try:
        user, created = accounts.create_or_reset_admin(username, password)
    except ServiceError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.field) from None
    if created:
        click.echo(f"Created the administrator {user.username!r}.")
    else:
        click.echo(f"{user.username!r} is now an active administrator with the new password.")


@click.command("prune-requests")
@click.option(
    "--days",
    type=click.IntRange(1, 36_500),
    default=None,
    help="Remove rows older than this many days (default: SEADRAGON_LOG_RETENTION_DAYS).",
)
@with_appcontext
def prune_requests_command(days: int | None) -> None:
    """Delete request-log rows older than the retention period, in batches; print how many went."""
    _upgrade()
    days = days or current_app.config["SEADRAGON"].log_retention_days
    removed = prune_requests(db.engine, retention_cutoff(days))
    click.echo(f"Removed {removed} request-log row{'s' if removed != 1 else ''} older than {days} days.")


def register_commands(app: Flask) -> None:
    """Add the commands to ``app.cli``."""
    app.cli.add_command(init_db)
    app.cli.add_command(create_admin)
    app.cli.add_command(prune_requests_command)
