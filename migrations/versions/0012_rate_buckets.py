"""rate_buckets: the rate-limit window counted in one-second buckets (PostgreSQL)

aop_reserve() counted every signal of the last 60 s under the process's lock, so each signal cost
PostgreSQL more the busier the process was (at 300 signals a second, ~18,000 rows counted per
signal: PostgreSQL spent more CPU on the limit than on the signals). Now it sums at most 60 rows,
one a second, whatever the rate. A signal counts for 60 to 61 s (its second's bucket goes once that
second is more than 60 s past): the limit errs strict by under a second, never loose. Same function, same signature: a replica of the previous
release calls it unchanged during a rolling upgrade. The places counted before the upgrade are
dropped with their table: for that first minute a process may take up to one limit more.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("process_id", sa.String(length=200), nullable=False),
        sa.Column("second", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("process_id", "second"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE)
    with op.batch_alter_table("rate_reservations") as batch_op:
        batch_op.drop_index("ix_rate_reservations_process_at")
    op.drop_table("rate_reservations")


def downgrade() -> None:
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
        op.execute(PREVIOUS)
    op.drop_table("rate_buckets")


# NULL: a place was taken. Otherwise when the oldest bucket's places began to count as 60 s old
# (its second + 1 s): the next place frees 60 s after that.
RESERVE = """
CREATE OR REPLACE FUNCTION aop_reserve(p text, lim integer, now_ts timestamptz) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    oldest timestamptz;
    sec timestamptz := date_trunc('second', now_ts);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rate:' || p));
    DELETE FROM rate_buckets WHERE process_id = p AND second <= sec - interval '61 seconds';
    SELECT coalesce(sum(count), 0), min(second) INTO n, oldest FROM rate_buckets WHERE process_id = p;
    IF n >= lim THEN
        RETURN coalesce(oldest + interval '1 second', now_ts);
    END IF;
    INSERT INTO rate_buckets (process_id, second, count) VALUES (p, sec, 1)
        ON CONFLICT (process_id, second) DO UPDATE SET count = rate_buckets.count + 1;
    RETURN NULL;
END $$;
"""

PREVIOUS = """
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
