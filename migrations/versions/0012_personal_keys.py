"""personal API keys (api_keys.owner_id) and admin-made password-reset links (docs/contract.md §14)

Revision ID: 0012_personal_keys
Revises: 0011_model_profiles
"""

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012_personal_keys"
down_revision: str | Sequence[str] | None = "0011_model_profiles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextlib.contextmanager
def _api_keys_rebuilt() -> Iterator[Any]:
    """Alter ``api_keys``; on SQLite the table is rebuilt, so with foreign keys off (dropping the old
    table would otherwise null every request-log row's key) and keeping 0009's AUTOINCREMENT."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError(
                "foreign keys could not be turned off (inside a transaction?): nothing changed"
            )
    # The rebuilt table's sequence starts at its largest id: the removed keys' ids above it would be
    # given again (docs/contract.md §16), so the old sequence is carried over.
    seq = "SELECT seq FROM sqlite_sequence WHERE name = 'api_keys'"
    last = bind.exec_driver_sql(seq).scalar() if sqlite else None
    try:
        with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
            yield batch_op
        if last is not None:
            bind.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'api_keys'", (last,)
            )
        if sqlite:
            broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:5]}")
    finally:
        if sqlite:
            bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    """Add ``api_keys.owner_id`` (null: every existing key is the admin's) and ``password_resets``."""
    with _api_keys_rebuilt() as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_keys_owner_id"), ["owner_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_api_keys_owner_id_users", "users", ["owner_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_resets_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Drop the table and the column."""
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_resets_user_id"))
    op.drop_table("password_resets")
    with _api_keys_rebuilt() as batch_op:
        batch_op.drop_constraint("fk_api_keys_owner_id_users", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_keys_owner_id"))
        batch_op.drop_column("owner_id")
