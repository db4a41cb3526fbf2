"""Process-level questions and the pause switch: who owns what, what is open, who may pause."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import changelog, escalations, policy
from bot.domain.escalations import open_clause
from bot.domain.models import Escalation, ProcessEvent, ProcessState, SlackMessage, Vote
from bot.domain.paging import resolved_people
from bot.domain.registry import Process, Registry, is_user_id
from bot.ops import clock
from bot.ops.db import CHANGED_ESCALATIONS, Database

# Resolves a registry person (user ID, group, email) to user IDs; None when Slack cannot.
Resolver = Callable[[str], list[str] | None]

ROLES = ("responsible", "accountable", "consulted", "informed", "escalation")


def holds(person: str | None, user_id: str, resolve: Resolver | None) -> bool:
    if not person:
        return False
    if person == user_id:
        return True
    if resolve is None or is_user_id(person):
        return False
    return user_id in (resolve(person) or [])


def roles_of(proc: Process, user_id: str, resolve: Resolver | None) -> list[str]:
    """The RACI+E roles (and 'approver') a person holds on a process."""
    raci = proc.raci
    out = []
    for role in ROLES:
        value = getattr(raci, role)
        people = value if isinstance(value, list) else [value]
        if any(holds(p, user_id, resolve) for p in people):
            out.append(role)
    if any(holds(p, user_id, resolve) for p in proc.approvals.approvers + proc.approvals.compliance):
        out.append("approver")
    return out


def may_pause(proc: Process, user_id: str, resolve: Resolver | None) -> bool:
    return holds(proc.raci.accountable, user_id, resolve) or holds(proc.raci.escalation, user_id, resolve)


@dataclass(frozen=True)
class State:
    status: str  # active | paused
    by: str | None = None
    at: datetime | None = None
    reason: str | None = None


def state_of(session: Session, process_id: str) -> State:
    row = session.get(ProcessState, process_id)
    if row is None or row.status != "paused":
        return State("active")
    return State("paused", row.changed_by, row.changed_at, row.reason)


class NotAllowed(Exception):
    pass


def control_entry(proc: Process, decision: str, by: str, at: datetime, note: str | None,
                  **extra: Any) -> dict[str, Any]:
    """A person's control of a process (paused, resumed, reviewed) as a change-log entry: the
    standard fields, human_escalation true (a person, not the agent), no escalation."""
    return {
        "process_id": proc.id, "timestamp": clock.iso(at), "model": "unknown", "inputs": {},
        "tools_invoked": [], "policy_checks": [], "decision": decision, "human_escalation": True,
        "owner": proc.raci.accountable or proc.raci.escalation or "", "kind": "control",
        "decided_by": by, "decided_at": clock.iso(at), "reason": note, "tier": proc.tier, **extra,
    }


def set_paused(db: Database, proc: Process, user_id: str, paused: bool, reason: str | None,
               resolve: Resolver | None, cancel_open: bool = False) -> tuple[State, int]:
    """Pause or resume a process (accountable or escalation owner only), recorded with who, when and
    why, in the audit trail and the change log. A pause tells the callbacks of its open escalations;
    cancel_open also cancels them (each an outcome in the change log). Returns the new state and how
    many escalations were cancelled."""
    if not may_pause(proc, user_id, resolve):
        raise NotAllowed(proc.raci.accountable or proc.raci.escalation or "")
    now = clock.now()
    status = "paused" if paused else "active"
    cancelled = 0
    with db.transaction() as s:
        row = s.get(ProcessState, proc.id)
        if row is None:
            row = ProcessState(process_id=proc.id)
            s.add(row)
        row.status, row.changed_by, row.changed_at, row.reason = status, user_id, now, reason
        event = "paused" if paused else "resumed"
        s.add(ProcessEvent(process_id=proc.id, event=event, by=user_id, at=now, reason=reason))
        # Lock the open escalations first, in id order, before the change log's head: a click and
        # expiry take the escalation, then the head, so this order never deadlocks with them. A row a
        # decision ended while we waited is skipped (PostgreSQL re-checks it once the lock is ours).
        opened = list(s.scalars(select(Escalation).where(Escalation.process_id == proc.id, open_clause())
                                .order_by(Escalation.id).with_for_update()))
        cancel = bool(paused and cancel_open)
        changelog.append(s, control_entry(proc, event, user_id, now, reason,
                                          open_escalations=len(opened), cancel_open=cancel))
        for esc in opened:
            if paused and esc.request.get("callback_url"):
                # Its own ordering key: an agent that cannot take the event never holds its outcome back.
                outbox.enqueue(s, "callback", f"callback-event:{esc.id}", {
                    "url": esc.request["callback_url"], "event": {
                        "event": "process_paused", "process_id": proc.id, "escalation_id": esc.id,
                        "paused_by": user_id, "paused_at": clock.iso(now), "reason": reason,
                        "escalation_cancelled": cancel}},
                    escalation_id=esc.id, trace_id=esc.trace_id)
            if cancel:
                cancelled += escalations.cancel_by_owner(s, esc, user_id, f"process paused: {reason or ''}".strip())
            else:
                escalations.rerender(s, esc)  # its card says the process is paused (or not any more)
        # Wake this process's agents' long-polls now (a pause ends them; see escalation_view.still_waiting).
        s.info.setdefault(CHANGED_ESCALATIONS, set()).update(e.id for e in opened)
        outbox.enqueue(s, "announce", proc.channel, {
            "channel": proc.channel, "process_name": proc.name, "status": status, "by": user_id, "reason": reason,
            "cancelled": cancelled})
    return State(status, user_id, now, reason), cancelled


@dataclass(frozen=True)
class Headline:
    """What every list of escalations shows of one (a Slack card adds the rest)."""

    id: str
    process_id: str
    process_name: str
    tier: int
    status: str
    summary: str


@dataclass(frozen=True)
class OpenItem(Headline):
    created_at: datetime
    paged: list[str]  # registry people paged so far
    channel: str | None
    message_ts: str | None  # the parent message in the process channel
    approvals: int


def _paged_people(esc: Escalation) -> list[str]:
    steps = max(esc.page_step, 1)
    levels = esc.snapshot["levels"]
    out: list[str] = []
    for i in range(min(steps, len(levels) * (esc.snapshot.get("repeat", 0) + 1))):
        for p in levels[i % len(levels)]["notify"]:
            if p not in out:
                out.append(p)
    return out


def open_items(session: Session, process_id: str | None = None, limit: int = 20,
               only: Callable[[Escalation], bool] | None = None, where=None) -> tuple[list[OpenItem], int]:
    """Open escalations, oldest first (with where their thread is), and how many there are in all.
    `where` narrows in SQL; `only` then decides in Python."""
    q = select(Escalation).where(open_clause())
    if where is not None:
        q = q.where(where)
    count_q = select(func.count()).select_from(Escalation).where(open_clause())
    if process_id:
        q, count_q = q.where(Escalation.process_id == process_id), count_q.where(Escalation.process_id == process_id)
    q = q.order_by(Escalation.created_at)
    if only is None:
        rows = list(session.scalars(q.limit(limit)))
        total = session.scalar(count_q) or 0
    else:
        rows = [e for e in session.scalars(q).yield_per(500) if only(e)]
        total = len(rows)
        rows = rows[:limit]
    ids = [e.id for e in rows]
    threads = {m.escalation_id: m for m in session.scalars(
        select(SlackMessage).where(SlackMessage.kind == "parent", SlackMessage.escalation_id.in_(ids)))}
    votes = dict(session.execute(
        select(Vote.escalation_id, func.count()).where(Vote.escalation_id.in_(ids),
                                                       Vote.vote == "approve").group_by(Vote.escalation_id)).all())
    items = []
    for e in rows:
        t = threads.get(e.id)
        items.append(OpenItem(e.id, e.process_id, e.snapshot["name"], e.tier, e.status,
                              e.request["action"]["summary"], e.created_at, _paged_people(e),
                              t.channel if t else None, t.ts if t else None, votes.get(e.id, 0)))
    return items, total


def waiting_on(session: Session, user_id: str, limit: int = 20) -> tuple[list[OpenItem], int]:
    """Open escalations this person may decide (and has not already approved)."""
    voted = set(session.scalars(select(Vote.escalation_id).where(Vote.user_id == user_id, Vote.vote == "approve")))

    def mine(e: Escalation) -> bool:
        return (policy.needs_decision(e.tier) and user_id in resolved_people(e)["approvers"]
                and e.id not in voted)

    narrow = None
    if session.get_bind().dialect.name == "postgresql":  # let the database drop the escalations of others
        narrow = text("(escalations.resolved IS NULL"
                      " OR escalations.resolved -> 'approvers' @> CAST(:who AS jsonb))").bindparams(
            who=json.dumps([user_id]))
    return open_items(session, None, limit, only=mine, where=narrow)


def history(session: Session, process_id: str, limit: int = 20) -> list[ProcessEvent]:
    """Pauses and resumes of a process, newest first."""
    return list(session.scalars(select(ProcessEvent).where(ProcessEvent.process_id == process_id)
                                .order_by(ProcessEvent.at.desc(), ProcessEvent.id.desc()).limit(limit)))


def open_count(session: Session, process_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Escalation).where(
        Escalation.process_id == process_id, open_clause())) or 0


def processes_of(registry: Registry, user_id: str, resolve: Resolver | None) -> list[tuple[Process, list[str]]]:
    out = []
    for proc in registry.all():
        roles = roles_of(proc, user_id, resolve)
        if roles:
            out.append((proc, roles))
    return out


@dataclass(frozen=True)
class HomeData:
    waiting: list[OpenItem]  # the first of what waits on the person
    total: int
    owned: list[tuple[Process, list[str]]]  # processes where they hold a role, with the roles
    slo: dict[str, Any] = field(default_factory=dict)  # process id → its SLO card (governance.with_slo_cards)


def home_of(db: Database, registry: Registry, user_id: str, resolve: Resolver | None, limit: int) -> HomeData:
    """What a person's App Home shows, read in one transaction."""
    with db.transaction() as s:
        waiting, total = waiting_on(s, user_id, limit)
    return HomeData(waiting, total, processes_of(registry, user_id, resolve))
