"""Tables. Every change to them is an Alembic revision under migrations/versions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# none_as_null: a Python None is SQL NULL (so "IS NULL" finds it), not the JSON value null.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class RegistrySnapshot(Base):
    """Each accepted version of aops.yml; replicas follow the newest."""

    __tablename__ = "registry_snapshots"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(500))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AgentToken(Base):
    __tablename__ = "agent_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    process_ids: Mapped[list[str]] = mapped_column(JSONType)
    agent_user: Mapped[str | None] = mapped_column(String(32))  # the agent's own Slack identity, if any
    callback_secret: Mapped[str] = mapped_column(String(100))  # HMAC key for signed callbacks
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Escalation(Base):
    __tablename__ = "escalations"
    __table_args__ = (
        UniqueConstraint("process_id", "idempotency_key", name="uq_escalations_idempotency"),
        Index("ix_escalations_process_created", "process_id", "created_at"),
        Index("ix_escalations_status_expires", "status", "expires_at"),
        Index("ix_escalations_status_next_page", "status", "next_page_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    tier: Mapped[int] = mapped_column(Integer)
    token_id: Mapped[int] = mapped_column(ForeignKey("agent_tokens.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    action_hash: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)  # process as it was when this opened
    resolved: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # people resolved to user IDs
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(32))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    # The paging timeline: the next step of the snapshotted policy and when it is due (None: done).
    page_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_page_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Copied from the signal for the scorecard (spend, cycle time), so it need not read the JSON.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def trace_id(self) -> str | None:
        """The agent's trace id, carried on every log line and outbox row about this escalation."""
        return self.request.get("trace_id")


class Vote(Base):
    """One person's approve/reject on an escalation; one row a person (counts once)."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("escalation_id", "user_id", name="uq_votes_person"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(32))
    vote: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlackMessage(Base):
    """Where an escalation shows in Slack, so every surface can be updated in place."""

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("escalation_id", "kind", "recipient", name="uq_slack_messages"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(ForeignKey("escalations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # parent | thread | dm
    recipient: Mapped[str] = mapped_column(String(32), default="")
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangelogEntry(Base):
    """The agent change log: append-only, one hash chain per process."""

    __tablename__ = "changelog"
    __table_args__ = (
        UniqueConstraint("process_id", "seq", name="uq_changelog_seq"),
        Index("ix_changelog_process_ts", "process_id", "timestamp"),
        Index("ix_changelog_ts", "timestamp"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    escalation_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    human_escalation: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    hash: Mapped[str] = mapped_column(String(64))
    # 1: the hash covers body only (entries written before 0006); 2: every column above (RFC 8785).
    hash_version: Mapped[int] = mapped_column(Integer, server_default="1")


class ChangelogHead(Base):
    """The chain tip per process; locking it serialises appends to one process."""

    __tablename__ = "changelog_heads"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxItem(Base):
    """Work to do after commit (Slack calls, callbacks), claimed by any replica with a lease."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_ordering", "ordering_key", "status", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    ordering_key: Mapped[str] = mapped_column(String(200))
    escalation_id: Mapped[str | None] = mapped_column(String(40), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class SlackInboxItem(Base):
    """A click or reject reason Slack was told we received: written before the ack, applied after it,
    deleted once applied. A row left behind (a crash after the ack) is applied by the next tick."""

    __tablename__ = "slack_inbox"
    __table_args__ = (Index("ix_slack_inbox_received", "received_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # approve | reject | acknowledge | qa_ok | qa_wrong
    user_id: Mapped[str] = mapped_column(String(32))
    escalation_id: Mapped[str | None] = mapped_column(String(40))  # approve, reject, acknowledge
    qa_review_id: Mapped[int | None] = mapped_column(BigInteger)  # qa_ok, qa_wrong
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RateBucket(Base):
    """Signals a process was allowed in one second of its rate-limit window (PostgreSQL; migration
    0012). Counted and added by aop_reserve() under a per-process lock, in a transaction of its own
    that commits without waiting for the disk, so signals queue on the limit for a moment, not for a
    whole durable commit each; a check sums at most 60 rows, however busy the process."""

    __tablename__ = "rate_buckets"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    second: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class ProcessEvent(Base):
    """The audit trail of the pause switch: who paused or resumed which process, when and why."""

    __tablename__ = "process_events"
    __table_args__ = (Index("ix_process_events_process_at", "process_id", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(20))  # paused | resumed
    by: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class Worker(Base):
    """A running replica's heartbeat: work it claimed is free for others once it stops beating."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessState(Base):
    """Runtime state of a process that is not configuration (pause switch)."""

    __tablename__ = "process_state"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(10))  # active | paused
    changed_by: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class DigestRun(Base):
    """One row per local day: inserting it is the claim to send that day's digest (a unique key, so
    exactly one replica wins however many try)."""

    __tablename__ = "digest_runs"
    local_date: Mapped[date] = mapped_column(Date, primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BoundaryViolation(Base):
    """Tools an agent tried outside its process's allowed_tools (refused with 422), counted per day
    and tool for the scorecard: a refused request stores nothing else."""

    __tablename__ = "boundary_violations"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tool: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PersonCheck(Base):
    """What Slack last said of a registry person given as a user id (users.info): active, deleted
    (left the company), a bot, or not found; read by the SLO card and the digest's hygiene section."""

    __tablename__ = "person_checks"
    person: Mapped[str] = mapped_column(String(320), primary_key=True)  # an email may be this long
    state: Mapped[str] = mapped_column(String(20))  # active | deleted | bot | not_found
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessModel(Base):
    """The model a process's agents last reported (signals and change-log records): a different one is
    a model change, recorded once (ModelChange) under this row's lock."""

    __tablename__ = "process_models"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelChange(Base):
    """A process's agents started reporting another model: who reported it first, when, from → to."""

    __tablename__ = "model_changes"
    __table_args__ = (Index("ix_model_changes_process_at", "process_id", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200))
    from_model: Mapped[str] = mapped_column(String(200))
    to_model: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_by: Mapped[str] = mapped_column(String(200))  # the agent token's name


class QaReview(Base):
    """A recorded agent action sampled for review (sampling QA): its Slack card, and the one verdict
    a reviewer gives it (first reviewer wins, through a conditional UPDATE on status)."""

    __tablename__ = "qa_reviews"
    __table_args__ = (
        UniqueConstraint("process_id", "entry_seq", name="uq_qa_reviews_entry"),
        Index("ix_qa_reviews_process_reviewed", "process_id", "reviewed_at"),
        Index("ix_qa_reviews_status_due", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200))
    entry_seq: Mapped[int] = mapped_column(BigInteger)  # the reviewed change-log entry
    entry_hash: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[int] = mapped_column(ForeignKey("agent_tokens.id"))  # signs the verdict's callback
    callback_url: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)  # name, channel, reviewers, redact, owner
    resolved: Mapped[list[str] | None] = mapped_column(JSONType)  # reviewers as user IDs, once posted
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # overdue after this (the tier's target)
    status: Mapped[str] = mapped_column(String(10))  # pending | ok | wrong
    reviewed_by: Mapped[str | None] = mapped_column(String(32))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    review_seq: Mapped[int | None] = mapped_column(BigInteger)  # the review's own change-log entry
    channel: Mapped[str | None] = mapped_column(String(32))  # the card, once posted
    ts: Mapped[str | None] = mapped_column(String(32))
