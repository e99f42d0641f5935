"""change_marker: one counter every write that matters to the gateway's identity cache moves

The gateway polls this one row twice a second and reads the identity tables again only
when it moved (proxy_app/identity_cache.py). Triggers move it, so every writer counts:
the admin app, the CLI, a script, a hand-written UPDATE. Writes the cache itself makes
(``api_keys.last_used``) and a login's (``users.last_login_at``, a rehash) do not move it.

A later migration that rebuilds one of these tables (SQLite batch mode) must create its
triggers again: ``create_triggers(op, table)`` below does.

Revision ID: 0013_change_marker
Revises: 0012_personal_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_change_marker"
down_revision: str | Sequence[str] | None = "0012_personal_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POLICY = ("models", "rpm", "max_queued", "max_concurrent", "daily_tokens", "daily_gpu_seconds")
# table -> the columns whose change moves the marker on UPDATE (None: every column)
WATCHED: dict[str, tuple[str, ...] | None] = {
    "api_keys": (
        "key_hash",
        "priority",
        "name",
        "expires_at",
        "end_user_header",
        "is_active",
        "revoked_at",
        "owner_id",
        *_POLICY,
    ),
    "whitelist_entries": None,
    "users": ("username", "is_admin", "is_active", "session_version", *_POLICY),
    "access_tokens": None,
    "model_profiles": None,
}
BUMP = "UPDATE change_marker SET version = version + 1"


def _changed(dialect: str, columns: tuple[str, ...]) -> str:
    if dialect == "postgresql":  # json has no equality operator: compare the text
        return " OR ".join(f"(NEW.{c})::text IS DISTINCT FROM (OLD.{c})::text" for c in columns)
    return " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)


def create_triggers(operations, table: str) -> None:
    """The triggers that move the marker on ``table``'s inserts, deletes and watched updates."""
    dialect = operations.get_bind().dialect.name
    columns = WATCHED[table]
    if dialect == "postgresql":
        operations.execute(
            f"CREATE TRIGGER change_marker_{table}_rows AFTER INSERT OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION seadragon_bump_change_marker()"
        )
        when = f"WHEN ({_changed(dialect, columns)}) " if columns else ""
        operations.execute(
            f"CREATE TRIGGER change_marker_{table}_update AFTER UPDATE ON {table} FOR EACH ROW "
            f"{when}EXECUTE FUNCTION seadragon_bump_change_marker()"
        )
        return
    for event in ("INSERT", "DELETE"):
        operations.execute(
            f"CREATE TRIGGER change_marker_{table}_{event.lower()} AFTER {event} ON {table} "
            f"BEGIN {BUMP}; END"
        )
    when = f"WHEN {_changed(dialect, columns)} " if columns else ""
    operations.execute(
        f"CREATE TRIGGER change_marker_{table}_update AFTER UPDATE ON {table} {when}BEGIN {BUMP}; END"
    )


def _drop_triggers(table: str, dialect: str) -> None:
    names = ("rows", "update") if dialect == "postgresql" else ("insert", "delete", "update")
    for name in names:
        on = f" ON {table}" if dialect == "postgresql" else ""
        op.execute(f"DROP TRIGGER IF EXISTS change_marker_{table}_{name}{on}")


def upgrade() -> None:
    """Create ``change_marker`` (one row) and the triggers that move it."""
    op.create_table(
        "change_marker",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO change_marker (id, version) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION seadragon_bump_change_marker() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
    for table in WATCHED:
        create_triggers(op, table)


def downgrade() -> None:
    """Drop the triggers and the table."""
    dialect = op.get_bind().dialect.name
    for table in WATCHED:
        _drop_triggers(table, dialect)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS seadragon_bump_change_marker()")
    op.drop_table("change_marker")
