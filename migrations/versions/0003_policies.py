"""policies per identity (docs/contract.md §7) on API keys, whitelist entries and users

Revision ID: 0003_policies
Revises: 0001
Create Date: 2026-12-02 02:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003_policies'
down_revision: Union[str, Sequence[str], None] = '0002_username_key'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('api_keys', 'whitelist_entries', 'users')


def _policy_columns() -> list[sa.Column]:
    return [
        sa.Column('models', sa.JSON(), nullable=True),
        sa.Column('rpm', sa.Integer(), nullable=True),
        sa.Column('max_queued', sa.Integer(), nullable=True),
        sa.Column('max_concurrent', sa.Integer(), nullable=True),
        sa.Column('daily_tokens', sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _policy_columns():
                batch_op.add_column(column)
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('end_user_header', sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('end_user_header')
        batch_op.drop_column('expires_at')
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(_policy_columns()):
                batch_op.drop_column(column.name)
