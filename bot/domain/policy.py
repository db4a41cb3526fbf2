"""Tier rules: who may decide, and when approvals add up to an outcome. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

OPEN_STATUSES = ("pending", "acknowledged")
TERMINAL_STATUSES = ("approved", "rejected", "expired", "cancelled")


FIRST_DECIDING_TIER = 2  # tiers 0-1 are acknowledged; 2+ are approved or rejected


def needs_decision(tier: int) -> bool:
    return tier >= FIRST_DECIDING_TIER


# "Still open", the one rule behind is_open() and its SQL twin (escalations.open_clause): pending is
# open at every tier; acknowledged ends tier 0-1 but on tier 2+ it still waits for a decision.
OPEN_AT_EVERY_TIER = "pending"
OPEN_WHILE_DECIDING = "acknowledged"


def is_open(status: str, tier: int) -> bool:
    if status == OPEN_AT_EVERY_TIER:
        return True
    return status == OPEN_WHILE_DECIDING and needs_decision(tier)


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


# -- the paging timeline ------------------------------------------------------------------------

SINGLE_LEVEL_REPEAT_GAP_S = 15 * 60


@dataclass(frozen=True)
class PageStep:
    offset_s: int  # seconds after the escalation opened
    level: int  # index into the policy's levels
    cycle: int  # 0 for the first pass, 1.. for repeats


def page_schedule(level_afters: list[int], repeat: int) -> list[PageStep]:
    """Every page an escalation will send while nobody acknowledges, in order.

    A repeat starts the policy over one 'last gap' after the last level (the time the last level
    waited for its turn; 15 minutes for a one-level policy), like PagerDuty's repeat.
    """
    if not level_afters:
        return []
    last = level_afters[-1]
    gap = last - level_afters[-2] if len(level_afters) > 1 else 0
    cycle_len = last + (gap or SINGLE_LEVEL_REPEAT_GAP_S)
    return [PageStep(c * cycle_len + after, i, c) for c in range(repeat + 1) for i, after in enumerate(level_afters)]
