"""request log: end_user (the person behind a shared key, from its end_user_header)

Revision ID: 0008_end_user
Revises: 0007_token_note
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_end_user"
down_revision: str | Sequence[str] | None = "0007_token_note"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``end_user`` (empty for every existing row)."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_user", sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("end_user")
