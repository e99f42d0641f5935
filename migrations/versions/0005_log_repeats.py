"""request log: repeats (collapsed refusals) and key_prefix (the refused key's prefix)

Revision ID: 0005_log_repeats
Revises: 0004_audit
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_log_repeats"
down_revision: str | Sequence[str] | None = "0004_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``repeats`` (1 for every existing row) and ``key_prefix``."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repeats", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("key_prefix", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("key_prefix")
        batch_op.drop_column("repeats")
