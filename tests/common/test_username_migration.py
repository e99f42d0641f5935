"""Migration 0002_username_key: existing names get their NFKC spelling and a unique key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from common.db import alembic_config, make_sync_engine, upgrade

ROWS = [(1, "Émile"), (2, "émile"), (3, "ａｄｍｉｎ"), (4, "bob")]


def test_existing_names_are_normalised_and_clashes_keep_the_older_account(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        for user_id, name in ROWS:
            connection.execute(
                sa.text(
                    "INSERT INTO users (id, username, password_hash, is_admin, is_active, session_version,"
                    " created_at) VALUES (:id, :name, 'x', 0, 1, 1, '2026-01-01 00:00:00')"
                ),
                {"id": user_id, "name": name},
            )
    upgrade(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, username, username_key FROM users ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [
        (1, "Émile", "émile"),
        (2, "émile", "émile#2"),
        (3, "admin", "admin"),
        (4, "bob", "bob"),
    ]
    with engine.begin() as connection, pytest.raises(sa.exc.IntegrityError):
        connection.execute(
            sa.text(
                "INSERT INTO users (username, username_key, password_hash, is_admin, is_active,"
                " session_version, created_at) VALUES ('x', 'bob', 'x', 0, 1, 1, '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
