"""The escalation state machine: acknowledge, decide, cancel, expire (opening is bot/intake.py).

State changes, their change-log entry and their outbox rows commit in one transaction; Slack and
callbacks happen later from the outbox. The first terminal outcome wins through one conditional
UPDATE guarded by the open states, so double clicks and racing replicas cannot decide twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import changelog, policy
from bot.domain.errors import Conflict, Forbidden
from bot.domain.intake import get_for_token
from bot.domain.models import AgentToken, Escalation, SlackInboxItem, Vote
from bot.domain.paging import resolved_people, responder_people, responders
from bot.ops import clock
from bot.ops.db import CHANGED_ESCALATIONS, Database

log = logging.getLogger("aopbot.escalations")


def open_clause():
    """SQL for 'still open': policy.is_open() as a WHERE clause."""
    return or_(
        Escalation.status == policy.OPEN_AT_EVERY_TIER,
        and_(Escalation.status == policy.OPEN_WHILE_DECIDING, Escalation.tier >= policy.FIRST_DECIDING_TIER),
    )


def votes_of(session: Session, esc_id: str) -> list[Vote]:
    return list(session.scalars(select(Vote).where(Vote.escalation_id == esc_id).order_by(Vote.id)))


def _policy_check_names(request: dict[str, Any]) -> list[str]:
    return [c if isinstance(c, str) else c["name"] for c in request.get("policy_checks", [])]


def outcome_entry(esc: Escalation, approvers: list[str]) -> dict[str, Any]:
    """The change-log entry for an escalation's outcome: the standard fields, then the extras."""
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
                                             "trace_id": esc.trace_id})
    approvers = [v.user_id for v in votes_of(session, esc.id) if v.vote == "approve"]
    changelog.append(session, outcome_entry(esc, approvers))
    _after_change(session, esc)
    callback_url = esc.request.get("callback_url")
    if callback_url:
        outbox.enqueue(session, "callback", f"callback:{esc.id}", {"url": callback_url}, escalation_id=esc.id,
                       trace_id=esc.trace_id)
    return True


def cancel_by_owner(session: Session, esc: Escalation, user_id: str, reason: str) -> int:
    """An owner's pause with --cancel-open ends an open escalation (1 if this call ended it)."""
    return int(_close(session, esc, "cancelled", user_id, reason))


def rerender(session: Session, esc: Escalation) -> None:
    """Re-draw its Slack messages (something around it changed, such as its process's pause)."""
    _after_change(session, esc)


def _after_change(session: Session, esc: Escalation) -> None:
    """Every visible change re-renders the escalation's Slack messages in place (in order per escalation),
    and is named on the session so the commit can wake the long-polls waiting on it (Database.on_commit)."""
    session.info.setdefault(CHANGED_ESCALATIONS, set()).add(esc.id)
    outbox.enqueue(session, "render", f"esc:{esc.id}", {}, escalation_id=esc.id, trace_id=esc.trace_id)


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


def _expire_if_due(s: Session, esc: Escalation, clicked_at: datetime | None = None) -> None:
    """A click after the deadline does not beat expiry, however late the tick is. clicked_at: when
    Slack delivered the click (it may be applied a little later); that is what counts."""
    if policy.is_open(esc.status, esc.tier) and deadline_passed(esc, clicked_at):
        _close(s, esc, "expired", None, "nobody decided before the deadline")


def _authorize_decision(s: Session, esc: Escalation | None, user_id: str,
                        clicked_at: datetime | None = None) -> Outcome:
    if esc is None:
        return Outcome("not_found")
    if not policy.is_open(esc.status, esc.tier):
        return Outcome("closed", esc)
    if deadline_passed(esc, clicked_at):
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
           reason: str | None = None, clicked_at: datetime | None = None) -> Outcome:
    with db.transaction() as s:
        esc = _lock(s, esc_id)
        if esc is not None:
            _expire_if_due(s, esc, clicked_at)
        verdict = _authorize_decision(s, esc, user_id, clicked_at)
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


def acknowledge(db: Database, esc_id: str, user_id: str, clicked_at: datetime | None = None) -> Outcome:
    """'I'm on it': ends tier 0-1; on tier 2+ stops re-paging and the decision is still needed."""
    with db.transaction() as s:
        esc = _lock(s, esc_id)
        if esc is None:
            return Outcome("not_found")
        _expire_if_due(s, esc, clicked_at)
        if not policy.is_open(esc.status, esc.tier):
            return Outcome("closed", esc)
        token = s.get(AgentToken, esc.token_id)
        if user_id == (token.agent_user if token else None) or user_id not in responders(esc):
            return Outcome("not_allowed", esc, deciders=responder_people(esc))
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


def cancel(db: Database, esc_id: str, token: AgentToken) -> None:
    """The agent that raised it calls it off (409 once it has an outcome; a repeat is harmless)."""
    with db.transaction() as session:
        esc = get_for_token(session, esc_id, token)
        if esc.token_id != token.id:
            raise Forbidden("only the agent that raised an escalation may cancel it", field="id")
        if not _close(session, esc, "cancelled", None, "cancelled by the agent"):
            session.refresh(esc)
            if esc.status != "cancelled":
                raise Conflict(f"escalation already {esc.status}", field="id")


def expire_due(db: Database, limit: int = 200) -> int:
    """Expire every open escalation whose deadline has passed. Safe on every replica at once."""
    now = clock.now()
    done = 0
    # A click Slack delivered before the deadline and not yet applied (the inbox) wins over expiry;
    # one stuck longer than CLICK_GRACE (its apply keeps failing) no longer holds expiry back.
    clicked_in_time = exists().where(SlackInboxItem.escalation_id == Escalation.id,
                                     SlackInboxItem.received_at < Escalation.expires_at,
                                     SlackInboxItem.received_at > now - CLICK_GRACE)
    with db.transaction() as s:
        q = select(Escalation.id).where(open_clause(), Escalation.expires_at <= now, ~clicked_in_time).order_by(
            Escalation.expires_at).limit(limit)
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)
        for esc_id in list(s.scalars(q)):
            esc = s.get(Escalation, esc_id)
            if esc is not None and _close(s, esc, "expired", None, "nobody decided before the deadline"):
                done += 1
    return done


CLICK_GRACE = timedelta(minutes=5)


def deadline_passed(esc: Escalation, now: datetime | None = None) -> bool:
    return (now or clock.now()) >= esc.expires_at
