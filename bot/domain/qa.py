"""Sampling QA (docs/registry.md#sampling-qa): which recorded agent actions a person reviews, the
review itself, and the error rate that comes out of the reviews.

- Sampling is a keyed hash of the agent's own record (never of what the server adds: seq, chain
  hashes, tier), so the operator can reproduce every choice with AOP_QA_KEY and an agent, which does
  not hold the key, cannot tell which of its actions will be looked at.
- A review is written once: the first reviewer's verdict wins through one conditional UPDATE, and it
  is appended to the process's change-log chain (decision qa_ok or qa_wrong) in the same
  transaction, with the card's re-render and the agent's callback queued in the outbox.
- The error rate is wrong / reviewed with a 95 % Wilson score interval, which stays inside [0, 1] and
  honest at the small samples QA gives (a normal interval around 0 of 20 would claim 0 % ± 0).

Nothing here talks to Slack or HTTP; bot/delivery/slack_qa.py posts and updates the cards.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import changelog
from bot.domain.models import AgentToken, ChangelogEntry, QaReview, UTCDateTime
from bot.domain.registry import DEFAULT_MAX_ERROR_RATE, DEFAULT_TARGET_S, Process, Registry, is_user_id
from bot.ops import clock
from bot.ops.db import Database

# How long a sampled action may wait for its review before the digest calls it overdue: the tier's
# time-to-decision target (SPEC §2).
REVIEW_TARGET_S = DEFAULT_TARGET_S  # a review waits no longer than the tier's decision target
Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
DECISIONS = {"qa_ok": "ok", "qa_wrong": "wrong"}  # the change-log decision → the review's status
# Fields of an agent's record that are not the action it took: owner (filled in from the registry
# when absent) and callback_url (where the verdict goes; never stored in the change log).
NOT_SAMPLED = frozenset({"owner", "callback_url"})
CARD_KIND, RENDER_KIND = "qa_card", "qa_render"  # outbox kinds (bot/delivery/slack_qa.py)
WINDOW = timedelta(days=30)  # the digest's and /metrics' error rate: reviews given in the last 30 days

Decision = Literal["qa_ok", "qa_wrong"]


def review_target_seconds(tier: int) -> int:
    return REVIEW_TARGET_S[tier]


# -- sampling ------------------------------------------------------------------------------------


def sampling_material(entry: dict[str, Any]) -> dict[str, Any]:
    """What the sampling hash covers: the fields of the agent's record (POST /api/v1/changelog's body
    but owner and callback_url) as stored, its timestamp included."""
    from bot.api.schemas import ChangelogRecord

    return {k: entry[k] for k in ChangelogRecord.model_fields if k in entry and k not in NOT_SAMPLED}


def draw(key: bytes, entry: dict[str, Any]) -> float:
    """A number in [0, 1) fixed by the key and the record: HMAC-SHA256 over the record's RFC 8785 JSON,
    its first 8 bytes as a big-endian integer, divided by 2^64."""
    mac = hmac.new(key, changelog.jcs(sampling_material(entry)).encode(), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") / 2**64


def is_sampled(key: bytes, entry: dict[str, Any], rate: float) -> bool:
    return rate > 0 and draw(key, entry) < rate


def sample(session: Session, proc: Process, token: AgentToken, stored: dict[str, Any], callback_url: str | None,
           key: bytes) -> QaReview | None:
    """Inside the record's transaction: when the record is sampled, its review row and the outbox row
    that posts its card commit with it (or neither does)."""
    rate = proc.qa_sample_rate()
    if not is_sampled(key, stored, rate):
        return None
    now = clock.now()
    row = QaReview(
        process_id=proc.id, entry_seq=stored["seq"], entry_hash=stored["hash"], token_id=token.id,
        callback_url=callback_url, tier=proc.tier, sampled_at=now, status="pending",
        due_at=now + timedelta(seconds=proc.approvals.target or review_target_seconds(proc.tier)),
        snapshot={"name": proc.name, "channel": proc.channel, "reviewers": proc.qa_reviewers(),
                  "decision": str(stored["decision"])[:200],
                  "redact": list(proc.redact), "owner": proc.raci.accountable or proc.raci.escalation or "",
                  "rate": rate, "agent": token.name, "agent_user": token.agent_user},
    )
    session.add(row)
    session.flush()
    # Cards queue per process, not per channel: a burst of them never holds up a page in the same channel.
    outbox.enqueue(session, CARD_KIND, f"qa:{proc.id}", {"review": row.id}, trace_id=stored.get("trace_id"))
    return row


def reviewed_entry(session: Session, row: QaReview) -> dict[str, Any] | None:
    """The change-log entry a review is about."""
    entry = session.scalars(select(ChangelogEntry).where(ChangelogEntry.process_id == row.process_id,
                                                         ChangelogEntry.seq == row.entry_seq)).first()
    return changelog.row_to_entry(entry) if entry is not None else None


# -- the review ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to a reviewer's click, for the handler to tell them."""

    result: Literal["ok", "reviewed", "closed", "not_allowed", "not_found"]
    review: QaReview | None = None
    reviewers: list[str] = field(default_factory=list)  # who may review, for a refusal


def may_review(row: QaReview, user_id: str) -> bool:
    """A reviewer the card names (groups and emails as Slack resolved them when it was posted), never
    the agent's own Slack identity."""
    if user_id == row.snapshot.get("agent_user"):
        return False
    allowed = row.resolved if row.resolved is not None else [p for p in row.snapshot["reviewers"] if is_user_id(p)]
    return user_id in allowed


def _authorize(row: QaReview | None, user_id: str) -> Outcome:
    if row is None:
        return Outcome("not_found")
    if row.status != "pending":
        return Outcome("closed", row)
    if not may_review(row, user_id):
        return Outcome("not_allowed", row, list(row.snapshot["reviewers"]))
    return Outcome("ok", row)


def check_may_review(db: Database, review_id: int, user_id: str) -> Outcome:
    """Before the Wrong modal opens: is the card still open, and may this person review it?"""
    with db.transaction() as s:
        row = s.get(QaReview, review_id)
        out = _authorize(row, user_id)
        if row is not None:
            s.expunge(row)
    return out


def review_entry(row: QaReview, reviewed: dict[str, Any] | None, decision: Decision, by: str, at: datetime,
                 note: str | None) -> dict[str, Any]:
    """The change-log entry of a review: a person's judgement (human_escalation true, kind qa) on the
    entry it names by seq and hash; model is the reviewed action's, so errors can be told by model."""
    return {
        "process_id": row.process_id, "timestamp": clock.iso(at),
        "model": (reviewed or {}).get("model") or "unknown", "inputs": {}, "tools_invoked": [], "policy_checks": [],
        "decision": decision, "human_escalation": True, "owner": row.snapshot.get("owner", ""), "kind": "qa",
        "decided_by": by, "decided_at": clock.iso(at), "reason": note, "tier": row.tier,
        "reviewed_seq": row.entry_seq, "reviewed_hash": row.entry_hash,
    }


def verdict_event(row: QaReview, reviewed: dict[str, Any] | None, appended: dict[str, Any]) -> dict[str, Any]:
    """The callback body the agent gets (docs/api.md#qa-verdicts)."""
    reviewed = reviewed or {}
    return {
        "event": "qa_review", "process_id": row.process_id, "verdict": row.status,
        "decision": appended["decision"], "note": row.note, "reviewed_by": row.reviewed_by,
        "reviewed_at": clock.iso(row.reviewed_at),
        "entry": {"seq": row.entry_seq, "hash": row.entry_hash, "timestamp": reviewed.get("timestamp"),
                  "decision": reviewed.get("decision"), "trace_id": reviewed.get("trace_id")},
        "review": {"seq": appended["seq"], "hash": appended["hash"]},
    }


def review(db: Database, review_id: int, user_id: str, decision: Decision, note: str | None = None) -> Outcome:
    """Record one verdict. The first reviewer wins: the row is locked and updated only while pending,
    so a double click, a second reviewer or a replayed click gets "closed" and changes nothing."""
    now = clock.now()
    with db.transaction() as s:
        row = s.scalars(select(QaReview).where(QaReview.id == review_id).with_for_update()).first()
        out = _authorize(row, user_id)
        if out.result != "ok":
            if row is not None:
                s.expunge(row)
            return out
        won = s.execute(update(QaReview).where(QaReview.id == review_id, QaReview.status == "pending")
                        .values(status=DECISIONS[decision], reviewed_by=user_id, reviewed_at=now, note=note)
                        .execution_options(synchronize_session=False)).rowcount
        s.refresh(row)
        if won != 1:
            s.expunge(row)
            return Outcome("closed", row)
        reviewed = reviewed_entry(s, row)
        appended = changelog.append(s, review_entry(row, reviewed, decision, user_id, now, note))
        row.review_seq = appended["seq"]
        trace = (reviewed or {}).get("trace_id")
        outbox.enqueue(s, RENDER_KIND, f"qa:{row.id}", {"review": row.id}, trace_id=trace)
        if row.callback_url:
            outbox.enqueue(s, "callback", f"callback:qa:{row.id}", {
                "url": row.callback_url, "qa_review": row.id, "event": verdict_event(row, reviewed, appended)},
                trace_id=trace)
        s.flush()
        s.expunge(row)
    return Outcome("reviewed", row)


# -- the error rate ----------------------------------------------------------------------------------


def wilson(wrong: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of wrong / n ((0, 1) when nothing was reviewed)."""
    if n <= 0:
        return 0.0, 1.0
    p = wrong / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ErrorRate:
    process_id: str
    reviewed: int = 0  # the sample size
    wrong: int = 0

    @property
    def rate(self) -> float | None:
        return self.wrong / self.reviewed if self.reviewed else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.wrong, self.reviewed)

    def above(self, max_error_rate: float) -> bool:
        """The interval's lower bound has crossed the limit: more errors than chance explains."""
        return self.reviewed > 0 and self.interval[0] > max_error_rate


def error_rates(session: Session, process_ids: Iterable[str] | None, since: datetime | None,
                until: datetime | None) -> dict[str, ErrorRate]:
    """Per process, the reviews given in [since, until) (None: unbounded) and how many said Wrong."""
    ids = None if process_ids is None else list(dict.fromkeys(process_ids))
    out = {pid: ErrorRate(pid) for pid in ids or []}
    q = (select(QaReview.process_id, func.count(), func.sum(case((QaReview.status == "wrong", 1), else_=0)))
         .where(QaReview.status.in_(("ok", "wrong"))).group_by(QaReview.process_id))
    if ids is not None:
        q = q.where(QaReview.process_id.in_(ids))
    if since is not None:
        q = q.where(QaReview.reviewed_at >= since)
    if until is not None:
        q = q.where(QaReview.reviewed_at < until)
    for pid, n, wrong in session.execute(q):
        out[pid] = ErrorRate(pid, int(n), int(wrong or 0))
    return out


@dataclass(frozen=True)
class Waiting:
    """Sampled actions of a process not reviewed yet, and how many of them are past the tier's target."""

    pending: int = 0
    overdue: int = 0
    oldest_overdue: datetime | None = None  # when the oldest overdue one was sampled


def waiting(session: Session, process_ids: Iterable[str] | None, now: datetime) -> dict[str, Waiting]:
    ids = None if process_ids is None else list(dict.fromkeys(process_ids))
    overdue = QaReview.due_at <= now
    q = (select(QaReview.process_id, func.count(), func.sum(case((overdue, 1), else_=0)),
                func.min(case((overdue, QaReview.sampled_at), else_=None), type_=UTCDateTime()))
         .where(QaReview.status == "pending").group_by(QaReview.process_id))
    if ids is not None:
        q = q.where(QaReview.process_id.in_(ids))
    out = {pid: Waiting() for pid in ids or []}
    for pid, n, late, oldest in session.execute(q):
        out[pid] = Waiting(int(n), int(late or 0), oldest)
    return out


# -- the digest's QA section -------------------------------------------------------------------------


@dataclass(frozen=True)
class QaLine:
    """One process in the digest: its error rate over WINDOW, its limit, and what waits for review."""

    process_id: str
    name: str
    rate: ErrorRate
    max_error_rate: float
    waiting: Waiting

    @property
    def flagged(self) -> bool:
        return self.rate.above(self.max_error_rate)

    def to_dict(self) -> dict[str, Any]:
        w = self.waiting
        return {"process_id": self.process_id, "name": self.name, "reviewed": self.rate.reviewed,
                "wrong": self.rate.wrong, "max_error_rate": self.max_error_rate, "pending": w.pending,
                "overdue": w.overdue, "oldest_overdue": clock.iso(w.oldest_overdue)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QaLine:
        oldest = clock.parse_iso(d["oldest_overdue"]) if d.get("oldest_overdue") else None
        return cls(d["process_id"], d["name"], ErrorRate(d["process_id"], d["reviewed"], d["wrong"]),
                   d["max_error_rate"], Waiting(d["pending"], d["overdue"], oldest))


def digest_lines(session: Session, registry: Registry, until: datetime, now: datetime) -> list[QaLine]:
    """Every registry process with reviews in the window or actions waiting for one; flagged first."""
    procs = {p.id: p for p in registry.all()}
    rates = error_rates(session, None, until - WINDOW, until)
    waits = waiting(session, None, now)
    lines = []
    for pid in sorted(set(rates) | set(waits)):
        proc = procs.get(pid)
        limit = proc.qa_max_error_rate() if proc else DEFAULT_MAX_ERROR_RATE
        lines.append(QaLine(pid, proc.name if proc else pid, rates.get(pid, ErrorRate(pid)), limit,
                            waits.get(pid, Waiting())))
    return sorted(lines, key=lambda ln: (not ln.flagged, not ln.waiting.overdue, ln.name))
