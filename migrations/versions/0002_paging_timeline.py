"""paging timeline: page_step and next_page_at on escalations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalations") as batch_op:
        batch_op.add_column(sa.Column("page_step", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_page_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_escalations_status_next_page", ["status", "next_page_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("escalations") as batch_op:
        batch_op.drop_index("ix_escalations_status_next_page")
        batch_op.drop_column("next_page_at")
        batch_op.drop_column("page_step")
