"""a "for whom" note on registration tokens (docs/contract.md §11)

Revision ID: 0007_token_note
Revises: 0006_chat
Create Date: 2026-12-02 02:50:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007_token_note'
down_revision: Union[str, Sequence[str], None] = '0006_chat'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.drop_column('note')
