"""rate_reservations: the per-process rate limit's window, counted under a short lock of its own

On PostgreSQL, aop_reserve() takes the process's advisory lock, counts the window and takes a place,
all inside one statement: the lock is held by the server for microseconds, never across a round
trip to a busy Python process.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_reservations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("process_id", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rate_reservations") as batch_op:
        batch_op.create_index("ix_rate_reservations_process_at", ["process_id", "at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS aop_reserve(text, integer, timestamptz)")
    op.drop_table("rate_reservations")


# NULL: a place was taken. Otherwise the time of the oldest place in the window (refused: the next
# place frees when that one is 60 s old).
RESERVE = """
CREATE OR REPLACE FUNCTION aop_reserve(p text, lim integer, now_ts timestamptz) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    oldest timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rate:' || p));
    DELETE FROM rate_reservations WHERE process_id = p AND at <= now_ts - interval '60 seconds';
    SELECT count(*), min(at) INTO n, oldest FROM rate_reservations
        WHERE process_id = p AND at > now_ts - interval '60 seconds';
    IF n >= lim THEN
        RETURN coalesce(oldest, now_ts);
    END IF;
    INSERT INTO rate_reservations (process_id, at) VALUES (p, now_ts);
    RETURN NULL;
END $$;
"""
