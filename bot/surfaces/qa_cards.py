"""What a reviewer sees of a sampled action, gathered from the database into one plain value
(qa_blocks.py renders it). Redaction happens here, with the process's redact paths as they were
when the action was sampled, so no surface can forget it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.domain import qa
from bot.domain.models import QaReview
from bot.surfaces.cards import redact


@dataclass(frozen=True)
class QaCard:
    id: int
    process_id: str
    process_name: str
    tier: int
    rate: float  # the share sampled when this one was
    status: str  # pending | ok | wrong
    reviewers: list[str]  # people as configured (IDs, groups, emails)
    due_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    note: str | None
    # The recorded action, redacted.
    seq: int
    hash: str
    timestamp: str
    decision: str
    model: str
    agent_name: str
    inputs: dict[str, Any]
    tools: list[str]
    policy_checks: list[str]
    trace_id: str | None

    @property
    def is_open(self) -> bool:
        return self.status == "pending"


def build_qa_card(session: Session, row: QaReview) -> QaCard:
    entry = redact(qa.reviewed_entry(session, row) or {}, row.snapshot.get("redact", []))
    snap = row.snapshot
    return QaCard(
        id=row.id, process_id=row.process_id, process_name=snap.get("name", row.process_id), tier=row.tier,
        rate=float(snap.get("rate", 0)), status=row.status, reviewers=list(snap.get("reviewers", [])),
        due_at=row.due_at, reviewed_by=row.reviewed_by, reviewed_at=row.reviewed_at, note=row.note,
        seq=row.entry_seq, hash=row.entry_hash, timestamp=str(entry.get("timestamp", "")),
        decision=str(entry.get("decision", "")), model=str(entry.get("model", "unknown")),
        agent_name=snap.get("agent") or "agent", inputs=entry.get("inputs") or {},
        tools=[str(t) for t in entry.get("tools_invoked") or []],
        policy_checks=[str(c) for c in entry.get("policy_checks") or []], trace_id=entry.get("trace_id"),
    )
