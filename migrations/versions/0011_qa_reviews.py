"""qa_reviews: recorded agent actions sampled for review; slack_inbox carries QA clicks too

A sampled action gets a qa_reviews row (and a card in its process channel); the first reviewer's
verdict is written on it and appended to the change log. A QA click goes through slack_inbox like a
decision, so its escalation_id becomes optional and qa_review_id names the review.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "qa_reviews",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("process_id", sa.String(length=200), nullable=False),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("snapshot", JSON, nullable=False),
        sa.Column("resolved", JSON, nullable=True),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reviewed_by", sa.String(length=32), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("review_seq", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("ts", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["agent_tokens.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("process_id", "entry_seq", name="uq_qa_reviews_entry"),
    )
    with op.batch_alter_table("qa_reviews") as batch_op:
        batch_op.create_index("ix_qa_reviews_process_reviewed", ["process_id", "reviewed_at"], unique=False)
        batch_op.create_index("ix_qa_reviews_status_due", ["status", "due_at"], unique=False)
    with op.batch_alter_table("slack_inbox") as batch_op:
        batch_op.alter_column("escalation_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("qa_review_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM slack_inbox WHERE escalation_id IS NULL")
    with op.batch_alter_table("slack_inbox") as batch_op:
        batch_op.drop_column("qa_review_id")
        batch_op.alter_column("escalation_id", existing_type=sa.String(length=40), nullable=False)
    op.drop_table("qa_reviews")
