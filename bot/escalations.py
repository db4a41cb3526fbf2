"""The escalation state machine: open, acknowledge, decide, cancel, expire.

State changes, their change-log entry and their outbox rows commit in one transaction; Slack and
callbacks happen later from the outbox. The first terminal outcome wins through one conditional
UPDATE guarded by the open states, so double clicks and racing replicas cannot decide twice.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot import changelog, clock, outbox, policy
from bot.db import Database
from bot.models import AgentToken, Escalation, ProcessState, Vote
from bot.registry import Process, Registry
from bot.schemas import EscalationSignal

log = logging.getLogger("aopbot.escalations")

# -- errors the API turns into status codes ----------------------------------------------------


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    status, code = 404, "not_found"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Invalid(DomainError):
    status, code = 422, "invalid"


class Paused(DomainError):
    status, code = 423, "process_paused"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"


# -- helpers -----------------------------------------------------------------------------------


def _canonical_hash(obj: Any) -> str:
    return hashlib.sha256(changelog.canonical(obj).encode()).hexdigest()


def action_hash(action: dict[str, Any]) -> str:
    """What an approval covers: the exact action shown (summary, tools, params)."""
    return _canonical_hash(action)


def new_id() -> str:
    return "esc_" + secrets.token_hex(10)


def open_clause():
    """SQL for 'still open' (see policy.is_open)."""
    return or_(
        Escalation.status == "pending",
        and_(Escalation.status == "acknowledged", Escalation.tier >= 2),
    )


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
    }


# -- opening -----------------------------------------------------------------------------------


def _check_scope(token: AgentToken, process_id: str) -> None:
    if process_id not in token.process_ids:
        raise Forbidden(f"this token is not scoped to process {process_id!r}", field="process_id")


def open_escalation(
    session: Session, registry: Registry, token: AgentToken, signal: EscalationSignal
) -> tuple[Escalation, bool]:
    """Validate a signal against its process and store it; (escalation, created)."""
    proc = registry.get(signal.process_id)
    if proc is None:
        raise NotFound(f"unknown process {signal.process_id!r}", field="process_id")
    _check_scope(token, proc.id)

    request = signal.model_dump(mode="json")
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
            return prior, False

    state = process_status(session, proc.id)
    if state is not None and state.status == "paused":
        raise Paused(
            f"process {proc.id!r} is paused by {state.changed_by or 'an owner'}: {state.reason or 'no reason given'}",
            field="process_id",
        )

    now = clock.now()
    window_start = now - timedelta(seconds=60)
    count, oldest = session.execute(
        select(func.count(), func.min(Escalation.created_at)).where(
            Escalation.process_id == proc.id, Escalation.created_at > window_start
        )
    ).one()
    if count >= proc.rate_limit.per_minute:
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        retry_after = max(1, int(((oldest or now) + timedelta(seconds=60) - now).total_seconds()) + 1)
        raise RateLimited(
            f"process {proc.id!r} is over its rate limit of {proc.rate_limit.per_minute} escalations a minute",
            field="process_id",
            retry_after=retry_after,
        )

    tier = max(proc.tier, signal.tier if signal.tier is not None else proc.tier)
    if proc.allowed_tools is not None:
        for i, tool in enumerate(signal.action.tools):
            if tool not in proc.allowed_tools:
                raise Invalid(
                    f"tool {tool!r} is not in allowed_tools of {proc.id!r} ({', '.join(proc.allowed_tools) or 'none'})",
                    field=f"action.tools[{i}]",
                )
    if tier >= 3 and signal.rollback_plan is None:
        raise Invalid(f"tier {tier} escalations must carry a rollback_plan", field="rollback_plan")

    expires_s = signal.expires_in_s or proc.expiry_seconds()
    esc = Escalation(
        id=new_id(),
        process_id=proc.id,
        status="pending",
        tier=tier,
        token_id=token.id,
        idempotency_key=signal.idempotency_key,
        request_hash=request_hash,
        action_hash=action_hash(request["action"]),
        request=request,
        snapshot=snapshot_of(proc),
        resolved=None,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_s),
    )
    schedule = schedule_of(esc)
    first_now = schedule[0].offset_s == 0  # the first level is paged with the post, not a tick later
    esc.page_step = 1 if first_now else 0
    step_at = schedule[esc.page_step].offset_s if esc.page_step < len(schedule) else None
    esc.next_page_at = now + timedelta(seconds=step_at) if step_at is not None else None
    session.add(esc)
    session.flush()
    outbox.enqueue(session, "page", proc.channel, {"first_level": first_now}, escalation_id=esc.id,
                   trace_id=signal.trace_id)
    return esc, True


# -- the paging timeline --------------------------------------------------------------------------


def schedule_of(esc: Escalation) -> list[policy.PageStep]:
    levels = esc.snapshot["levels"]
    return policy.page_schedule([lvl["after"] for lvl in levels], esc.snapshot.get("repeat", 0))


def _advance_paging(session: Session, esc: Escalation, schedule: list[policy.PageStep]) -> bool:
    """Fire the escalation's current step exactly once (a conditional UPDATE on page_step) and
    queue its notification. False if another replica fired it first or it is no longer pending."""
    step = esc.page_step
    nxt = schedule[step + 1].offset_s if step + 1 < len(schedule) else None
    result = session.execute(
        update(Escalation)
        .where(Escalation.id == esc.id, Escalation.page_step == step, Escalation.status == "pending")
        .values(page_step=step + 1,
                next_page_at=esc.created_at + timedelta(seconds=nxt) if nxt is not None else None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    page = schedule[step]
    # Keyed by escalation, not channel: pages of different escalations never wait on each other.
    outbox.enqueue(session, "notify", f"esc:{esc.id}",
                   {"step": step, "level": page.level, "cycle": page.cycle}, escalation_id=esc.id,
                   trace_id=esc.request.get("trace_id"))
    session.refresh(esc)
    return True


def repage_due(db: Database, limit: int = 200) -> int:
    """Fire every paging step that is due (late ones too, in order). Safe on every replica at once."""
    now = clock.now()
    fired = 0
    with db.transaction() as s:
        q = (select(Escalation).where(Escalation.status == "pending", Escalation.next_page_at <= now)
             .order_by(Escalation.next_page_at).limit(limit))
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)
        for esc in list(s.scalars(q)):
            schedule = schedule_of(esc)
            while (esc.next_page_at is not None and esc.next_page_at <= now
                   and esc.page_step < len(schedule) and _advance_paging(s, esc, schedule)):
                fired += 1
    return fired


# -- reading -----------------------------------------------------------------------------------


def votes_of(session: Session, esc_id: str) -> list[Vote]:
    return list(session.scalars(select(Vote).where(Vote.escalation_id == esc_id).order_by(Vote.id)))


def view(session: Session, esc: Escalation, poll_url: str) -> dict[str, Any]:
    votes = votes_of(session, esc.id)
    terminal = not policy.is_open(esc.status, esc.tier)
    return {
        "id": esc.id,
        "process_id": esc.process_id,
        "status": esc.status,
        "decision": esc.status if terminal else None,
        "decided_by": esc.decided_by,
        "decided_at": clock.iso(esc.decided_at),
        "reason": esc.reason,
        "tier": esc.tier,
        "created_at": clock.iso(esc.created_at),
        "expires_at": clock.iso(esc.expires_at),
        "acknowledged_by": esc.acknowledged_by,
        "acknowledged_at": clock.iso(esc.acknowledged_at),
        "action_hash": esc.action_hash,
        "approvals": [{"user": v.user_id, "vote": v.vote, "at": clock.iso(v.created_at)} for v in votes],
        "idempotency_key": esc.idempotency_key,
        "trace_id": esc.request.get("trace_id"),
        "poll_url": poll_url,
    }


def get_for_token(session: Session, esc_id: str, token: AgentToken) -> Escalation:
    esc = session.get(Escalation, esc_id)
    if esc is None:
        raise NotFound(f"no escalation {esc_id!r}", field="id")
    _check_scope(token, esc.process_id)
    return esc


# -- people -------------------------------------------------------------------------------------


def resolved_people(esc: Escalation) -> dict[str, Any]:
    """Approvers etc. as Slack user IDs. Before the page step resolves groups and emails, only
    literal user IDs count (fail closed)."""
    if esc.resolved:
        return esc.resolved
    snap = esc.snapshot

    def users(people: list[str]) -> list[str]:
        return [p for p in people if p[:1] in ("U", "W")]

    return {
        "approvers": users(snap["approvers"]),
        "compliance": users(snap["compliance"]),
        "levels": [users(lvl["notify"]) for lvl in snap["levels"]],
        "unresolved": [],
    }


def responders(esc: Escalation) -> set[str]:
    people = resolved_people(esc)
    out = set(people["approvers"])
    for lvl in people["levels"]:
        out.update(lvl)
    return out


def set_resolved(db: Database, esc_id: str, resolved: dict[str, Any]) -> None:
    with db.transaction() as s:
        s.execute(update(Escalation).where(Escalation.id == esc_id, Escalation.resolved.is_(None))
                  .values(resolved=resolved))


# -- outcomes -----------------------------------------------------------------------------------


def _policy_check_names(request: dict[str, Any]) -> list[str]:
    return [c if isinstance(c, str) else c["name"] for c in request.get("policy_checks", [])]


def outcome_entry(esc: Escalation, approvers: list[str]) -> dict[str, Any]:
    """The change-log entry (SPEC §5 fields first, then the extras) for an escalation's outcome."""
    req = esc.request
    raci = esc.snapshot.get("raci", {})
    return {
        "process_id": esc.process_id,
        "timestamp": clock.iso(esc.decided_at),
        "model": req.get("model") or "unspecified",
        "inputs": req.get("inputs", {}),
        "tools_invoked": list(req["action"].get("tools", [])),
        "policy_checks": _policy_check_names(req),
        "decision": esc.status,
        "human_escalation": True,
        "owner": raci.get("accountable") or raci.get("escalation") or "",
        "escalation_id": esc.id,
        "tier": esc.tier,
        "action_summary": req["action"]["summary"],
        "action_hash": esc.action_hash,
        "approvers": approvers,
        "decided_by": esc.decided_by,
        "decided_at": clock.iso(esc.decided_at),
        "acknowledged_by": esc.acknowledged_by,
        "reason": esc.reason,
        "trace_id": req.get("trace_id"),
    }


def _close(session: Session, esc: Escalation, status: str, by: str | None, reason: str | None) -> bool:
    """The one conditional UPDATE that ends an escalation. True if this call won."""
    now = clock.now()
    values: dict[str, Any] = {"status": status, "decided_by": by, "decided_at": now, "reason": reason}
    if status == "acknowledged":
        values.update(acknowledged_by=by, acknowledged_at=now)
    result = session.execute(
        update(Escalation).where(Escalation.id == esc.id, open_clause()).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    session.refresh(esc)
    log.info("escalation %s", status, extra={"escalation_id": esc.id, "process_id": esc.process_id,
                                             "trace_id": esc.request.get("trace_id")})
    approvers = [v.user_id for v in votes_of(session, esc.id) if v.vote == "approve"]
    changelog.append(session, outcome_entry(esc, approvers), escalation_id=esc.id)
    _after_change(session, esc)
    callback_url = esc.request.get("callback_url")
    if callback_url:
        outbox.enqueue(session, "callback", f"callback:{esc.id}", {"url": callback_url}, escalation_id=esc.id,
                       trace_id=esc.request.get("trace_id"))
    return True


def _after_change(session: Session, esc: Escalation) -> None:
    """Every visible change re-renders the escalation's Slack messages in place (in order per escalation)."""
    outbox.enqueue(session, "render", f"esc:{esc.id}", {}, escalation_id=esc.id, trace_id=esc.request.get("trace_id"))


@dataclass
class Outcome:
    """What happened to a person's click, for the handler to tell them."""

    result: Literal[
        "ok", "decided", "vote_recorded", "already_voted", "closed", "not_allowed", "not_found", "acknowledged",
        "already_acknowledged",
    ]
    escalation: Escalation | None = None
    quorum: policy.Quorum | None = None
    deciders: list[str] = field(default_factory=list)  # who may act, for a refusal


def _lock(session: Session, esc_id: str) -> Escalation | None:
    """Serialise deciders of one escalation so tier-4 vote counting sees every vote."""
    return session.scalars(select(Escalation).where(Escalation.id == esc_id).with_for_update()).first()


def _expire_if_due(s: Session, esc: Escalation) -> None:
    """A click after the deadline does not beat expiry, however late the tick is (SPEC §2)."""
    if policy.is_open(esc.status, esc.tier) and deadline_passed(esc):
        _close(s, esc, "expired", None, "nobody decided before the deadline")


def _authorize_decision(s: Session, esc: Escalation | None, user_id: str) -> Outcome:
    if esc is None:
        return Outcome("not_found")
    if not policy.is_open(esc.status, esc.tier):
        return Outcome("closed", esc)
    if deadline_passed(esc):
        return Outcome("closed", esc)
    token = s.get(AgentToken, esc.token_id)
    agent_user = token.agent_user if token else None
    approvers = set(resolved_people(esc)["approvers"])
    if not policy.needs_decision(esc.tier) or not policy.may_decide(user_id, approvers, agent_user):
        return Outcome("not_allowed", esc, deciders=esc.snapshot["approvers"])
    return Outcome("ok", esc)


def check_may_decide(db: Database, esc_id: str, user_id: str) -> Outcome:
    """Read-only: would this person's decision count right now? (Before opening the reject modal.)"""
    with db.transaction() as s:
        return _authorize_decision(s, s.get(Escalation, esc_id), user_id)


def decide(db: Database, esc_id: str, user_id: str, vote: Literal["approve", "reject"],
           reason: str | None = None) -> Outcome:
    with db.transaction() as s:
        esc = _lock(s, esc_id)
        if esc is not None:
            _expire_if_due(s, esc)
        verdict = _authorize_decision(s, esc, user_id)
        if verdict.result != "ok":
            return verdict
        people = resolved_people(esc)

        existing = s.scalars(select(Vote).where(Vote.escalation_id == esc.id, Vote.user_id == user_id)).first()
        if existing is not None and existing.vote == vote:
            q = policy.quorum(esc.tier, [v.user_id for v in votes_of(s, esc.id) if v.vote == "approve"],
                              set(people["compliance"]))
            return Outcome("already_voted", esc, quorum=q)
        if existing is not None:
            existing.vote, existing.reason, existing.created_at = vote, reason, clock.now()
        else:
            s.add(Vote(escalation_id=esc.id, user_id=user_id, vote=vote, reason=reason, created_at=clock.now()))
        s.flush()

        if vote == "reject":
            _close(s, esc, "rejected", user_id, reason)
            return Outcome("decided", esc)
        approvals = [v.user_id for v in votes_of(s, esc.id) if v.vote == "approve"]
        q = policy.quorum(esc.tier, approvals, set(people["compliance"]))
        if q.met:
            _close(s, esc, "approved", user_id, reason)
            return Outcome("decided", esc, quorum=q)
        _after_change(s, esc)
        return Outcome("vote_recorded", esc, quorum=q)


def acknowledge(db: Database, esc_id: str, user_id: str) -> Outcome:
    """'I'm on it': ends tier 0-1; on tier 2+ stops re-paging and the decision is still needed."""
    with db.transaction() as s:
        esc = _lock(s, esc_id)
        if esc is None:
            return Outcome("not_found")
        _expire_if_due(s, esc)
        if not policy.is_open(esc.status, esc.tier):
            return Outcome("closed", esc)
        token = s.get(AgentToken, esc.token_id)
        if user_id == (token.agent_user if token else None) or user_id not in responders(esc):
            return Outcome("not_allowed", esc, deciders=_responder_people(esc))
        if esc.acknowledged_by:
            return Outcome("already_acknowledged", esc)
        if not policy.needs_decision(esc.tier):
            _close(s, esc, "acknowledged", user_id, None)
            return Outcome("acknowledged", esc)
        now = clock.now()
        s.execute(update(Escalation).where(Escalation.id == esc.id, Escalation.status == "pending")
                  .values(status="acknowledged", acknowledged_by=user_id, acknowledged_at=now)
                  .execution_options(synchronize_session=False))
        s.refresh(esc)
        _after_change(s, esc)
        return Outcome("acknowledged", esc)


def _responder_people(esc: Escalation) -> list[str]:
    people: list[str] = []
    for lvl in esc.snapshot["levels"]:
        people += [p for p in lvl["notify"] if p not in people]
    people += [p for p in esc.snapshot["approvers"] if p not in people]
    return people


def cancel(session: Session, esc_id: str, token: AgentToken) -> Escalation:
    esc = get_for_token(session, esc_id, token)
    if esc.token_id != token.id:
        raise Forbidden("only the agent that raised an escalation may cancel it", field="id")
    if not _close(session, esc, "cancelled", None, "cancelled by the agent"):
        session.refresh(esc)
        if esc.status != "cancelled":
            raise Conflict(f"escalation already {esc.status}", field="id")
    return esc


def expire_due(db: Database, limit: int = 200) -> int:
    """Expire every open escalation whose deadline has passed. Safe on every replica at once."""
    now = clock.now()
    done = 0
    with db.transaction() as s:
        q = select(Escalation.id).where(open_clause(), Escalation.expires_at <= now).order_by(
            Escalation.expires_at).limit(limit)
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)
        for esc_id in list(s.scalars(q)):
            esc = s.get(Escalation, esc_id)
            if esc is not None and _close(s, esc, "expired", None, "nobody decided before the deadline"):
                done += 1
    return done


def deadline_passed(esc: Escalation, now: datetime | None = None) -> bool:
    return (now or clock.now()) >= esc.expires_at
