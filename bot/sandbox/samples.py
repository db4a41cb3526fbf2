"""Sample escalation signals, one per kind of decision, for the sandbox page and `aopbot demo`.

Each picks the first process of its tier in the registry in force, so the samples follow whatever
registry is loaded (the example registry has one process of each).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.domain.registry import Process
from bot.ops import clock


@dataclass(frozen=True)
class Sample:
    key: str
    tier: int
    label: str
    action: dict[str, Any]
    extra: dict[str, Any]


SAMPLES = [
    Sample("tier0", 0, "Tier 0 · acknowledge", {"summary": "Post the ops-review summary to the wider team"},
           {"reason": "unsure", "message": "Two attendees asked to keep one topic off the record."}),
    Sample("tier2", 2, "Tier 2 · approve or reject",
           {"summary": "Refund $120 on ticket 123", "params": {"amount": 120, "currency": "USD"}},
           {"reason": "policy_check_failed", "message": "Customer says the order never arrived.",
            "inputs": {"ticket_id": "123", "customer_tier": "pro", "email": "pat@example.com"},
            "policy_checks": [{"name": "refund_limit_50", "passed": False, "detail": "120 > 50"}]}),
    Sample("tier3", 3, "Tier 3 · production change with rollback plan",
           {"summary": "Open PR: bump requests 2.31 → 2.32 in payments-api", "params": {"repo": "payments-api"}},
           {"reason": "boundary", "rollback_plan": "Revert the PR and redeploy the previous image (5 min).",
            "message": "The changelog mentions a changed default timeout."}),
    Sample("tier4", 4, "Tier 4 · two approvals, one from compliance",
           {"summary": "Approve KYC for customer 4471 despite an address mismatch", "params": {"customer": 4471}},
           {"reason": "policy_check_failed", "rollback_plan": "Freeze the account and reopen the KYC case.",
            "policy_checks": [{"name": "address_match", "passed": False, "detail": "utility bill ≠ form"}]}),
]


def available(processes: list[Process]) -> list[tuple[Sample, Process]]:
    """The samples the registry can take: each with the first process of its tier."""
    out = []
    for sample in SAMPLES:
        proc = next((p for p in processes if p.tier == sample.tier), None)
        if proc is not None:
            out.append((sample, proc))
    return out


def signal_body(sample: Sample, process: Process, n: int | None = None) -> dict[str, Any]:
    """The JSON an agent would send for this sample (tools from the process's allowlist)."""
    action = {**sample.action, "tools": list((process.allowed_tools or [])[:1])}
    if n is not None:
        action["summary"] = f"{action['summary']} (#{n})"
    # A cost and a start time, so `/aop stats` shows spend and cycle time from the first sample on.
    started = clock.iso(clock.now() - timedelta(minutes=3))
    return {"process_id": process.id, "idempotency_key": f"sandbox-{uuid.uuid4().hex}",
            "model": "sandbox:demo-model", "action": action, "trace_id": uuid.uuid4().hex[:16],
            "cost_usd": 0.0125, "started_at": started, **sample.extra}
