"""An escalation as its agent sees it: the body of GET /api/v1/escalations/{id}, of the callback,
and of the sandbox's agent panel (one representation, so they never disagree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from bot.domain import policy, processes
from bot.domain.errors import Revoked
from bot.domain.escalations import votes_of
from bot.domain.intake import get_for_token
from bot.domain.models import AgentToken, Escalation
from bot.ops import clock
from bot.ops.db import Database


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
        "trace_id": esc.trace_id,
        "poll_url": poll_url,
    }


def for_agent(db: Database, esc_id: str, token: AgentToken, poll_url: Callable[[str], str],
              recheck_token: bool = False) -> dict[str, Any]:
    """The view an agent's token may read (404 unknown, 403 another process's). recheck_token: the
    token was checked a while ago (a long-poll): a revocation since then ends the wait with 401."""
    with db.reading() as s:
        if recheck_token:
            row = s.get(AgentToken, token.id)
            if row is None or row.revoked_at is not None:
                raise Revoked("this token was revoked", field="Authorization")
        esc = get_for_token(s, esc_id, token)
        return {**view(s, esc, poll_url(esc.id)), "process_status": processes.state_of(s, esc.process_id).status}


def still_waiting(v: dict[str, Any]) -> bool:
    """A long-poll goes on while the outcome is still to come and the process is running: at tiers
    2+ an acknowledgement is not the outcome; a pause ends the wait (the agent should stop)."""
    return policy.is_open(v["status"], v["tier"]) and v.get("process_status", "active") == "active"
