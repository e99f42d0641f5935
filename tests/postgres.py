"""A PostgreSQL database of a test's own on the CI server, dropped afterwards."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa

from tests.conftest import require_service


@contextlib.contextmanager
def own_postgres_database() -> Iterator[str]:
    """Create a fresh database on ``SEADRAGON_TEST_POSTGRES_URL``'s server; yield its URL."""
    server = require_service("SEADRAGON_TEST_POSTGRES_URL")
    name = "seadragon_" + secrets.token_hex(6)
    admin = sa.create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
