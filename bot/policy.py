"""Tier rules (SPEC §2): who may decide, and when approvals add up to an outcome. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

OPEN_STATUSES = ("pending", "acknowledged")
TERMINAL_STATUSES = ("approved", "rejected", "expired", "cancelled")


def needs_decision(tier: int) -> bool:
    return tier >= 2


def is_open(status: str, tier: int) -> bool:
    """Acknowledged ends a tier 0-1 escalation; on tier 2+ it still waits for a decision."""
    if status == "pending":
        return True
    return status == "acknowledged" and needs_decision(tier)


def required_approvals(tier: int) -> int:
    return 2 if tier >= 4 else 1


@dataclass(frozen=True)
class Quorum:
    approvals: int
    required: int
    compliance_ok: bool
    met: bool

    def progress(self) -> str:
        if self.met:
            return "approved"
        parts = [f"{self.approvals} of {self.required} approvals"]
        if not self.compliance_ok:
            parts.append("waiting for compliance")
        return "; ".join(parts)


def quorum(tier: int, approvers_so_far: list[str], compliance: set[str]) -> Quorum:
    distinct = list(dict.fromkeys(approvers_so_far))  # one person counts once
    required = required_approvals(tier)
    compliance_ok = tier < 4 or any(a in compliance for a in distinct)
    return Quorum(len(distinct), required, compliance_ok, len(distinct) >= required and compliance_ok)


def may_decide(user_id: str, approvers: set[str], agent_user: str | None) -> bool:
    return user_id != agent_user and user_id in approvers
