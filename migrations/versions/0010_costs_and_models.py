"""escalations.cost_usd and started_at; process_models and model_changes

The scorecard's spend and cycle time read two columns copied from the signal instead of its JSON.
process_models holds the model each process's agents last reported; a different one is recorded
once in model_changes (and in the change log).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalations") as batch_op:
        batch_op.add_column(sa.Column("cost_usd", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "process_models",
        sa.Column("process_id", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process_id"),
    )
    op.create_table(
        "model_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("process_id", sa.String(length=200), nullable=False),
        sa.Column("from_model", sa.String(length=200), nullable=False),
        sa.Column("to_model", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_changes") as batch_op:
        batch_op.create_index("ix_model_changes_process_at", ["process_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_table("model_changes")
    op.drop_table("process_models")
    with op.batch_alter_table("escalations") as batch_op:
        batch_op.drop_column("started_at")
        batch_op.drop_column("cost_usd")
