"""Taking a signal in: scope, idempotency, pause, rate limit, tool and tier rules, then one new
escalation with its process frozen onto it and its first page queued.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.api.schemas import EscalationSignal
from bot.domain import changelog, model_changes, paging
from bot.domain.errors import Conflict, Forbidden, Invalid, NotFound, Paused, RateLimited, Retired
from bot.domain.models import AgentToken, BoundaryViolation, Escalation, ProcessState
from bot.domain.registry import Process, Registry
from bot.ops import clock
from bot.ops.db import Database, upsert_insert


def _canonical_hash(obj: Any) -> str:
    return hashlib.sha256(changelog.canonical(obj).encode()).hexdigest()


def action_hash(action: dict[str, Any]) -> str:
    """What an approval covers: the exact action shown (summary, tools, params)."""
    return _canonical_hash(action)


def new_id() -> str:
    return "esc_" + secrets.token_hex(10)


def process_status(session: Session, process_id: str) -> ProcessState | None:
    return session.get(ProcessState, process_id)


def snapshot_of(proc: Process) -> dict[str, Any]:
    """The process as it is now, frozen onto the escalation (a later registry edit changes nothing)."""
    return {
        "name": proc.name,
        "tier": proc.tier,
        "channel": proc.channel,
        "raci": proc.raci.model_dump(mode="json"),
        "levels": proc.levels(),
        "repeat": proc.repeat,
        "approvers": proc.approver_people(),
        "compliance": list(proc.approvals.compliance),
        "redact": list(proc.redact),
        "governance": proc.governance_snapshot(),  # the SLO card at the end of its thread
    }


def check_scope(token: AgentToken, process_id: str) -> None:
    if process_id not in token.process_ids:
        raise Forbidden(f"this token is not scoped to process {process_id!r}", field="process_id")


@dataclass(frozen=True)
class Opened:
    id: str
    status: str
    tier: int
    created: bool  # False: the same idempotency_key and body came again


WINDOW = timedelta(seconds=60)


def _check_rate(proc, count: int, oldest: datetime | None, now: datetime) -> None:
    if count < proc.rate_limit.per_minute:
        return
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    retry_after = max(1, int(((oldest or now) + WINDOW - now).total_seconds()) + 1)
    raise RateLimited(
        f"process {proc.id!r} is over its rate limit of {proc.rate_limit.per_minute} escalations a minute",
        field="process_id",
        retry_after=retry_after,
    )


def refuse_paused(process_id: str, by: str | None, reason: str | None) -> None:
    raise Paused(f"process {process_id!r} is paused by {by or 'an owner'}: {reason or 'no reason given'}",
                 field="process_id")


def refuse_retired(proc) -> None:
    if proc.retired:
        raise Retired(f"process {proc.id!r} is retired (stage: retired in the registry): it takes no new signals "
                      "or records; ask its owner which process replaced it", field="process_id")


def check_tools(proc, tools: list[str], field: str, acted: bool = False) -> None:
    """Every tool must be in the process's allowed_tools (when it has one): 422 naming field[i].
    acted: the tools the agent ran itself (a change-log record), which a draft process may not have."""
    if acted and proc.capability == "draft" and tools:
        raise Invalid(f"tool {tools[0]!r}: process {proc.id!r} only drafts (capability: draft), so its agent "
                      "may not invoke tools; a person acts on its drafts", field=f"{field}[0]", tool=tools[0])
    if proc.allowed_tools is None:
        return
    for i, tool in enumerate(tools):
        if tool not in proc.allowed_tools:
            raise Invalid(f"tool {tool!r} is not in allowed_tools of {proc.id!r} "
                          f"({', '.join(proc.allowed_tools) or 'none'})", field=f"{field}[{i}]", tool=tool)


def count_violation(db: Database, process_id: str, error: Invalid) -> None:
    """A refused tool is a boundary violation on the scorecard (its own transaction: the request's
    rolled back). Counted per process, day and tool, so a looping agent adds no rows."""
    tool = error.extra.get("tool")
    if tool is None:
        return
    now = clock.now()
    with db.transaction() as s:
        stmt = upsert_insert(s, BoundaryViolation).values(process_id=process_id, day=now.date(), tool=str(tool)[:200],
                                                          count=1, last_at=now)
        s.execute(stmt.on_conflict_do_update(
            index_elements=["process_id", "day", "tool"],
            set_={"count": BoundaryViolation.count + 1, "last_at": now}))


def _checked_tier(proc, signal: EscalationSignal) -> int:
    """The escalation's tier, once the signal is known to keep its process's rules (no database)."""
    tier = max(proc.tier, signal.tier if signal.tier is not None else proc.tier)
    check_tools(proc, signal.action.tools, "action.tools")
    if tier >= 3 and signal.rollback_plan is None:
        raise Invalid(f"tier {tier} escalations must carry a rollback_plan", field="rollback_plan")
    return tier


# The pause switch is read in the same round trip; a paused process takes no place. Parsed once.
RESERVE = text(
    "SELECT set_config('synchronous_commit', 'off', true), "
    "CASE WHEN ps.status = 'paused' THEN NULL ELSE aop_reserve(:p, :lim, :now) END, "
    "ps.status, ps.changed_by, ps.reason "
    "FROM (SELECT 1) AS one LEFT JOIN process_state ps ON ps.process_id = :p")


def _reserve(db: Database, proc, signal: EscalationSignal) -> None:
    """Take one place in the process's window, or raise RateLimited (PostgreSQL).

    One statement in a transaction of its own (autocommit): aop_reserve() (migrations 0008, 0012) takes
    the process's advisory lock, counts the window and inserts, and the server commits at once,
    without waiting for the disk (synchronous_commit off for that statement). Concurrent signals
    queue on the limit for microseconds, not for a round trip and a durable commit each; their own
    transactions then commit in parallel. A crash of PostgreSQL may forget the newest places (the
    limit admits a few more that minute); the signals themselves commit durably."""
    now = clock.now()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if signal.idempotency_key and conn.execute(select(Escalation.id).where(
                Escalation.process_id == proc.id, Escalation.idempotency_key == signal.idempotency_key)).first():
            return  # a repeat: answered with the original, spends no place
        _, oldest, status, by, reason = conn.execute(
            RESERVE, {"p": proc.id, "lim": proc.rate_limit.per_minute, "now": now}).one()
    if status == "paused":
        refuse_paused(proc.id, by, reason)
    if oldest is not None:
        _check_rate(proc, proc.rate_limit.per_minute, oldest, now)


def open_escalation(db: Database, registry: Registry, token: AgentToken, signal: EscalationSignal) -> Opened:
    """Validate a signal against its process and store it, in a transaction of its own."""
    proc = registry.get(signal.process_id)
    if proc is not None and db.is_postgres and not proc.retired:  # retired: _open answers a repeat, or 410
        check_scope(token, proc.id)
        try:
            _checked_tier(proc, signal)
        except Invalid as broken:  # a paused process answers 423 before its rules (SPEC's order)
            with db.transaction() as s:
                state = process_status(s, proc.id)
            if state is not None and state.status == "paused":
                refuse_paused(proc.id, state.changed_by, state.reason)
            count_violation(db, proc.id, broken)
            raise
        _reserve(db, proc, signal)  # before the signal's transaction: never two connections at once
    for attempt in range(2):
        try:
            with db.transaction() as s:
                return _open(db, s, registry, token, signal)
        except Invalid as broken:
            count_violation(db, signal.process_id, broken)
            raise
        except IntegrityError:
            if attempt == 1:  # the same key raced twice and lost twice: say so, not 500
                raise Conflict("concurrent requests with this idempotency_key; retry",
                               field="idempotency_key") from None
    raise AssertionError("unreachable")


def _open(db: Database, session: Session, registry: Registry, token: AgentToken, signal: EscalationSignal
          ) -> Opened:
    proc = registry.get(signal.process_id)
    if proc is None:
        raise NotFound(f"unknown process {signal.process_id!r}", field="process_id")
    check_scope(token, proc.id)

    request = signal.model_dump(mode="json")
    for added in ("cost_usd", "started_at"):  # absent stays absent: a retry of a body the previous
        if request.get(added) is None:  # release accepted hashes as it did then (no 409)
            request.pop(added, None)
    request_hash = _canonical_hash(request)
    if signal.idempotency_key:
        prior = session.scalars(
            select(Escalation).where(
                Escalation.process_id == proc.id, Escalation.idempotency_key == signal.idempotency_key
            )
        ).first()
        if prior is not None:
            if prior.request_hash != request_hash:
                raise Conflict(
                    "idempotency_key was used before with a different body; use a new key for a new action",
                    field="idempotency_key",
                )
            return Opened(prior.id, prior.status, prior.tier, False)
    refuse_retired(proc)  # after the repeat: an agent retrying what was accepted before still gets its id

    if not db.is_postgres:  # on PostgreSQL _reserve read the switch, in the round trip it makes anyway
        state = process_status(session, proc.id)
        if state is not None and state.status == "paused":
            refuse_paused(proc.id, state.changed_by, state.reason)

    tier = _checked_tier(proc, signal)
    now = clock.now()
    if not db.is_postgres:  # SQLite's BEGIN IMMEDIATE serialises every writer: count right here
        _check_rate(proc, *session.execute(
            select(func.count(), func.min(Escalation.created_at)).where(
                Escalation.process_id == proc.id, Escalation.created_at > now - WINDOW)).one(), now)

    started_at = clock.parse_iso(signal.started_at) if signal.started_at is not None else None  # schema-checked
    expires_s = signal.expires_in_s or proc.expiry_seconds()
    model_changes.observe(session, proc, signal.model, token.name, now)
    row = {
        "id": new_id(), "process_id": proc.id, "status": "pending", "tier": tier, "token_id": token.id,
        "idempotency_key": signal.idempotency_key, "request_hash": request_hash,
        "action_hash": action_hash(request["action"]), "request": request, "snapshot": snapshot_of(proc),
        "resolved": None, "created_at": now, "expires_at": now + timedelta(seconds=expires_s),
        "cost_usd": signal.cost_usd, "started_at": started_at,
    }
    paging.insert_with_first_page(session, row)
    return Opened(row["id"], "pending", tier, True)


def get_for_token(session: Session, esc_id: str, token: AgentToken) -> Escalation:
    esc = session.get(Escalation, esc_id)
    if esc is None:
        raise NotFound(f"no escalation {esc_id!r}", field="id")
    check_scope(token, esc.process_id)
    return esc
