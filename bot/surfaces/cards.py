"""What a person sees about an escalation, gathered from the database into one plain value.

blocks.py renders a Card; nothing here knows about Slack. Redaction happens here, once, so no
surface can forget it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.domain import governance, policy
from bot.domain.escalations import votes_of
from bot.domain.models import AgentToken, Escalation
from bot.domain.paging import resolved_people
from bot.domain.processes import Headline

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Card(Headline):
    message: str | None
    reason_code: str | None
    model: str | None
    agent_name: str
    inputs: dict[str, Any]
    tools: list[str]
    params: dict[str, Any]
    policy_checks: list[dict[str, Any]]
    rollback_plan: Any
    trace_id: str | None
    action_hash: str
    created_at: datetime
    expires_at: datetime
    acknowledged_by: str | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    approvers: list[str]  # people as configured (IDs, groups, emails)
    compliance: list[str]
    approvals: list[str] = field(default_factory=list)  # user IDs who approved so far
    quorum: policy.Quorum | None = None
    # Mentions notify, so a card mentions only the people its first paging level pages; everyone
    # else is named (display names snapshotted when the escalation was paged).
    mention: frozenset[str] = frozenset()
    names: dict[str, str] = field(default_factory=dict)
    # The process's SLO card (the end of the thread) and whether it is paused now; None for an
    # escalation raised before the governance answers were kept on it.
    slo: governance.SloCard | None = None

    @property
    def process_paused(self) -> bool:
        return self.slo is not None and self.slo.state.status == "paused"

    @property
    def is_open(self) -> bool:
        return policy.is_open(self.status, self.tier)

    @property
    def needs_decision(self) -> bool:
        return policy.needs_decision(self.tier)


def redact(request: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Mask the listed dotted paths (e.g. inputs.email) in a copy of the signal."""
    if not paths:
        return request
    out = copy.deepcopy(request)
    for path in paths:
        parts = path.split(".")
        node: Any = out
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and parts[-1] in node:
            node[parts[-1]] = REDACTED
    return out


def build_card(session: Session, esc: Escalation) -> Card:
    req = redact(esc.request, esc.snapshot.get("redact", []))
    votes = votes_of(session, esc.id)
    approvals = [v.user_id for v in votes if v.vote == "approve"]
    people = resolved_people(esc)
    token = session.get(AgentToken, esc.token_id)
    checks = [c if isinstance(c, dict) else {"name": c} for c in req.get("policy_checks", [])]
    return Card(
        id=esc.id,
        process_id=esc.process_id,
        process_name=esc.snapshot["name"],
        tier=esc.tier,
        status=esc.status,
        summary=req["action"]["summary"],
        message=req.get("message"),
        reason_code=req.get("reason"),
        model=req.get("model"),
        agent_name=token.name if token else "agent",
        inputs=req.get("inputs") or {},
        tools=list(req["action"].get("tools") or []),
        params=req["action"].get("params") or {},
        policy_checks=checks,
        rollback_plan=req.get("rollback_plan"),
        trace_id=req.get("trace_id"),
        action_hash=esc.action_hash,
        created_at=esc.created_at,
        expires_at=esc.expires_at,
        acknowledged_by=esc.acknowledged_by,
        decided_by=esc.decided_by,
        decided_at=esc.decided_at,
        reason=esc.reason,
        approvers=list(esc.snapshot["approvers"]),
        compliance=list(esc.snapshot["compliance"]),
        approvals=approvals,
        quorum=policy.quorum(esc.tier, approvals, set(people["compliance"])),
        mention=frozenset(esc.snapshot["levels"][0]["notify"]) if esc.snapshot["levels"] else frozenset(),
        names=dict(people.get("names") or {}),
        slo=(governance.slo_card(session, governance.Answers.from_snapshot(esc.process_id, esc.snapshot))
             if "governance" in esc.snapshot else None),
    )
