"""usernames: NFKC spelling and a unique case-folded key

Revision ID: 0002_username_key
Revises: 0001

Existing names are rewritten to NFKC and given their key
(common.usernames.username_key). Where two existing accounts share a key
(``Émile`` and ``émile``), the older keeps it and each later one gets
``<key>#<id>``: its name no longer signs in, so an administrator must
disable it or reset it under another name. The migration prints each one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from common.usernames import KEY_MAX, normalise_username, username_key

revision: str = "0002_username_key"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``users.username_key``, fill it, make it unique and required."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_key", sa.String(length=KEY_MAX), nullable=True))
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("username_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id)).all()
    taken: set[str] = set()
    names = {row.username for row in rows}
    for row in rows:
        key = username_key(row.username)
        if key in taken:
            key = f"{key}#{row.id}"
            print(f"0002_username_key: user {row.id} ({row.username!r}) clashes with an older account")
        taken.add(key)
        name = normalise_username(row.username)
        if name != row.username and name in names:
            name = row.username  # the NFKC spelling belongs to another account: keep this one's
        names.add(name)
        connection.execute(
            sa.update(users).where(users.c.id == row.id).values(username=name, username_key=key)
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("username_key", existing_type=sa.String(length=KEY_MAX), nullable=False)
        batch_op.create_unique_constraint("uq_users_username_key", ["username_key"])


def downgrade() -> None:
    """Drop the key (the NFKC spellings stay)."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_username_key", type_="unique")
        batch_op.drop_column("username_key")
