"""The API's answers as typed objects (docs/api.md). Fields a newer server adds are kept, not refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict

# The statuses of docs/api.md#outcomes; `decision` is one of the last five once the escalation ended.
Status = Literal["pending", "acknowledged", "approved", "rejected", "expired", "cancelled"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Approval(_Answer):
    user: str
    vote: str  # "approve" | "reject"
    at: str


class Escalation(_Answer):
    """An escalation as the API shows it. `escalate` fills what the POST answers (`id`, `status`,
    `tier`, `poll_url`, `created`); `get`, `wait`, `cancel` and callbacks fill every field."""

    id: str
    status: str
    tier: int
    poll_url: str | None = None
    created: bool | None = None  # only from escalate: False when the idempotency key was seen before
    process_id: str | None = None
    decision: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    created_at: str | None = None
    expires_at: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    action_hash: str | None = None
    approvals: list[Approval] = []
    idempotency_key: str | None = None
    trace_id: str | None = None
    process_status: str = "active"

    @property
    def decided(self) -> bool:
        """The escalation has ended (approved, rejected, expired, cancelled, or acknowledged at tier 0-1)."""
        return self.decision is not None

    @property
    def approved(self) -> bool:
        return self.decision == "approved"


class Raci(_Answer):
    responsible: list[str] = []
    accountable: str | None = None
    consulted: list[str] = []
    informed: list[str] = []
    escalation: str | None = None


class PolicyLevel(_Answer):
    after: int  # seconds from the escalation's opening
    notify: list[str]


class Process(_Answer):
    """A process as the registry in force defines it, with its runtime state (GET /api/v1/processes/{id})."""

    id: str
    name: str
    tier: int
    channel: str | None = None
    status: str  # "active" | "paused"
    paused_by: str | None = None
    paused_at: str | None = None
    paused_reason: str | None = None
    raci: Raci
    escalation_policy: list[PolicyLevel] = []
    allowed_tools: list[str] | None = None
    open_escalations: int = 0


class ChangelogEntry(_Answer):
    """A stored change-log entry (docs/changelog.md), with its place in the process's hash chain."""

    process_id: str
    timestamp: str
    model: str
    decision: str
    human_escalation: bool
    inputs: dict[str, Any] = {}
    tools_invoked: list[str] = []
    policy_checks: list[str] = []
    owner: str | None = None
    trace_id: str | None = None
    action_hash: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


class PolicyCheck(TypedDict, total=False):
    name: str
    passed: bool | None
    detail: str | None


class EscalationFields(TypedDict, total=False):
    """The optional fields of an escalation (docs/api.md#request-fields); only those given are sent."""

    tools: list[str]
    params: dict[str, Any]
    idempotency_key: str
    model: str
    inputs: dict[str, Any]
    policy_checks: list[PolicyCheck | str]
    reason: str
    message: str
    tier: int
    rollback_plan: str | dict[str, Any]
    expires_in_s: int
    trace_id: str
    callback_url: str
    cost_usd: float


class RecordFields(TypedDict, total=False):
    """The optional fields of a change-log record (docs/api.md#post-apiv1changelog); only those given are sent."""

    model: str
    timestamp: str
    inputs: dict[str, Any]
    tools_invoked: list[str]
    policy_checks: list[str]
    owner: str
    trace_id: str
    action_hash: str
    cost_usd: float


def canonical(obj: Any) -> str:
    """The JSON text the server hashes: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def action_hash(summary: str, tools: list[str] | None = None, params: dict[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the action as the server hashes it: what an approval covers."""
    full = {"summary": summary, "tools": list(tools or []), "params": dict(params or {})}
    return hashlib.sha256(canonical(full).encode("utf-8")).hexdigest()


__all__ = ["Approval", "ChangelogEntry", "Escalation", "EscalationFields", "PolicyCheck", "PolicyLevel",
           "Process", "Raci", "RecordFields", "Status", "action_hash", "canonical"]
