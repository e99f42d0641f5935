"""``flask --app wsgi init-db`` and ``flask --app wsgi create-admin``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from admin_app import accounts
from admin_app.services import ServiceError
from common.db import upgrade


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


def register_commands(app: Flask) -> None:
    """Add the commands to ``app.cli``."""
    app.cli.add_command(init_db)
    app.cli.add_command(create_admin)
