"""model profiles (docs/contract.md §12) and, per request, whether a load happened or the body was adjusted

Revision ID: 0011_model_profiles
Revises: 0010_gpu_time
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_model_profiles"
down_revision: str | Sequence[str] | None = "0010_gpu_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``model_profiles``; add ``model_loaded`` and ``adjusted`` to the request log."""
    op.create_table(
        "model_profiles",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("load_options", sa.JSON(), nullable=False),
        sa.Column("keep_alive", sa.JSON(), nullable=True),
        sa.Column("keep_alive_min", sa.JSON(), nullable=True),
        sa.Column("keep_alive_max", sa.JSON(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_loaded", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("adjusted", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Drop the table and the columns."""
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("adjusted")
        batch_op.drop_column("model_loaded")
    op.drop_table("model_profiles")
