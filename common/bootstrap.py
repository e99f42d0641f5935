"""First-run preparation shared by the run command and the CLI."""

from __future__ import annotations

import json
import secrets
import sys

import sqlalchemy as sa

from common.db import make_sessionmaker, make_sync_engine, upgrade
from common.models import User
from common.security import hash_password
from common.settings import ConfigError, Settings


def create_user(session, username: str, password: str, *, is_admin: bool = False) -> User:
    """Add a user with a hashed password (the caller commits)."""
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin)
    session.add(user)
    return user


def prepare_database(settings: Settings) -> tuple[str, str | None] | None:
    """Migrate, and on an empty database create the first admin.

    Returns ``(username, generated_password_or_None)`` when an admin was
    created, ``None`` when users already existed.
    """
    upgrade(settings.database_url)
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            if session.scalar(sa.select(sa.func.count()).select_from(User)):
                return None
            generated = None
            password = settings.admin_password
            if password is None:
                generated = password = secrets.token_urlsafe(15)
            create_user(session, settings.admin_user, password, is_admin=True)
            session.commit()
            return settings.admin_user, generated
    finally:
        engine.dispose()


def main() -> int:
    """``python -m common.bootstrap``: prepare the database named by the environment.

    Prints one JSON line, ``{"created": null}`` or ``{"created": [username,
    generated_password_or_null]}``. The run command calls this in a child process
    so that the server never loads Alembic (about 10 MiB it would keep for nothing).
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"seadragon: configuration error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"created": prepare_database(settings)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
