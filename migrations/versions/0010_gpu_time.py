"""GPU time (docs/contract.md §13): request log gpu_ms and load_ms; daily_gpu_seconds policies

Revision ID: 0010_gpu_time
Revises: 0009_ids_never_reused
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_gpu_time"
down_revision: str | Sequence[str] | None = "0009_ids_never_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLICY_TABLES = ("api_keys", "whitelist_entries", "users")


def upgrade() -> None:
    """Add the columns (empty for every existing row: no GPU time known, no budget)."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("load_ms", sa.Float(), nullable=True))
    for table in POLICY_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("daily_gpu_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop them, in place: a batch rebuild would cascade deletes into child tables and lose
    0009's AUTOINCREMENT (SQLite drops a plain column itself since 3.35)."""
    columns = [(table, "daily_gpu_seconds") for table in POLICY_TABLES]
    columns += [("request_log", "load_ms"), ("request_log", "gpu_ms")]
    bind = op.get_bind()
    for table, column in columns:
        if bind.dialect.name == "sqlite":
            bind.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        else:
            op.drop_column(table, column)
