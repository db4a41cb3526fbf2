"""changelog.hash_version: entries from now on are hashed over every stored column (scheme 2)

Rows already written keep scheme 1 and still verify as they were hashed: history is never rewritten.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("changelog") as batch_op:
        batch_op.add_column(sa.Column("hash_version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("changelog") as batch_op:
        batch_op.drop_column("hash_version")
