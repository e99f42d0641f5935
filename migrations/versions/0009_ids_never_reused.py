"""identities: ids are never reused (SQLite AUTOINCREMENT on users, keys, tokens, whitelist)

Revision ID: 0009_ids_never_reused
Revises: 0008_end_user

Without AUTOINCREMENT SQLite gives a new row the largest id + 1, so removing
the newest whitelist entry and adding another gave the new one the old id, and
with it the old entry's counters (docs/contract.md §16). AUTOINCREMENT is part
of a SQLite table's definition: each table is rebuilt (rows copied, ids kept).
PostgreSQL's sequences never hand an id out twice: nothing to do there.

The rebuild drops the old table, which with foreign keys on would cascade to
the rows that refer to it (access tokens, conversations): foreign keys are off
while it runs, and checked before they are turned on again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_ids_never_reused"
down_revision: str | Sequence[str] | None = "0008_end_user"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "registration_tokens", "access_tokens", "api_keys", "whitelist_entries")


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys could not be turned off (inside a transaction?): nothing changed")
    try:
        for table in TABLES:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
            ):
                pass
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:5]}")
    finally:
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    """Rebuild the identity tables with AUTOINCREMENT (SQLite only)."""
    _rebuild(autoincrement=True)


def downgrade() -> None:
    """Rebuild them without it (SQLite only)."""
    _rebuild(autoincrement=False)
