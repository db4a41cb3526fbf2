"""Scorecards: how each process did over a time window, and what is open on it now.

One implementation serves `/aop stats`, the daily digest and /metrics. Every number comes from a
handful of aggregate queries grouped by process (the change log holds millions of rows); only the
open escalations, which expiry keeps few, are read row by row.

Windows are half-open: since <= t < until.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, cast, extract, false, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from bot.domain.escalations import open_clause
from bot.domain.models import ChangelogEntry, Escalation, OutboxItem, SlackMessage
from bot.domain.registry import DEFAULT_TARGET_S
from bot.ops import clock

OUTCOMES = ("approved", "rejected", "expired", "acknowledged", "cancelled")
DECISIONS = ("approved", "rejected")  # outcomes a person chose; their latency is "time to decision"


@dataclass(frozen=True)
class OverdueItem:
    id: str
    process_id: str
    summary: str
    status: str
    created_at: datetime
    expires_at: datetime
    age_s: float
    owner: str | None  # the registry person (U…, S… or email) as snapshotted on the escalation


@dataclass
class Scorecard:
    process_id: str
    since: datetime
    until: datetime
    actions: int = 0  # change-log entries without escalation: the agent acted on its own
    escalations: int = 0  # created in the window
    approved: int = 0  # outcomes, by decided_at in the window
    rejected: int = 0
    expired: int = 0
    acknowledged: int = 0
    cancelled: int = 0
    median_decision_s: float | None = None  # approved/rejected: decided_at - created_at
    p90_decision_s: float | None = None
    repages: int = 0  # re-page notes posted for escalations created in the window
    pending: int = 0  # open now
    overdue: int = 0  # open now and past half their decision window (see is_overdue)
    overdue_items: list[OverdueItem] = field(default_factory=list)
    # Spend (cost_usd the agents reported): of recorded actions, of escalations created in the window.
    action_spend: float = 0.0
    escalation_spend: float = 0.0
    # Decision target (tiers 0-1: acknowledge): outcomes in the window that had one, and how many
    # met it; an expiry misses it, a cancellation is not counted.
    target_s: int | None = None
    target_total: int = 0
    within_target: int = 0
    median_cycle_s: float | None = None  # signal's started_at -> outcome
    p90_cycle_s: float | None = None

    @property
    def spend(self) -> float:
        return self.action_spend + self.escalation_spend

    @property
    def cost_per_action(self) -> float | None:
        """Spend of recorded actions ÷ recorded actions."""
        return self.action_spend / self.actions if self.actions else None

    @property
    def cost_per_escalation(self) -> float | None:
        """Spend of escalations ÷ escalations."""
        return self.escalation_spend / self.escalations if self.escalations else None

    @property
    def cost_per_approved_outcome(self) -> float | None:
        """All spend ÷ what got done: recorded actions plus approved escalations."""
        done = self.actions + self.approved
        return self.spend / done if done else None

    @property
    def attainment(self) -> float | None:
        return self.within_target / self.target_total if self.target_total else None

    @property
    def escalation_rate(self) -> float:
        total = self.actions + self.escalations
        return self.escalations / total if total else 0.0

    @property
    def decided(self) -> int:
        return self.approved + self.rejected + self.expired + self.acknowledged + self.cancelled

    @property
    def quiet(self) -> bool:
        """Nothing happened in the window and nothing is waiting."""
        return not (self.actions or self.escalations or self.decided or self.repages or self.pending)


def is_overdue(created_at: datetime, expires_at: datetime, now: datetime) -> bool:
    """The overdue rule: an open escalation is overdue once more than half of its decision window
    (created_at → expires_at) has passed without a decision.

    Chosen over "its paging policy has run out" because acknowledging stops paging by design, so a
    tier 2+ escalation someone said they were on, and then forgot, would never count as overdue.
    """
    return (now - created_at) * 2 > (expires_at - created_at)


def percentile_cont(sorted_values: list[float], p: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks, in the same
    order of operations, so SQLite and PostgreSQL give the same number for the same data."""
    pos = p * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    first, second = sorted_values[lo], sorted_values[hi]
    return first + (second - first) * (pos - lo)


def _ms(value: float | None) -> float | None:
    # Millisecond precision: enough for people, and float noise never differs between backends.
    return None if value is None else round(float(value), 3)


def _owner(snapshot: dict[str, Any]) -> str | None:
    raci = snapshot.get("raci") or {}
    return raci.get("escalation") or raci.get("accountable")


def scorecards(session: Session, process_ids: Iterable[str] | None, since: datetime, until: datetime,
               now: datetime | None = None, targets: dict[str, int] | None = None) -> dict[str, Scorecard]:
    """Scorecards of these processes (all with any data when None) over [since, until). targets:
    each process's decision target in seconds (else the tier's default)."""
    now = now or clock.now()
    ids = None if process_ids is None else list(dict.fromkeys(process_ids))
    cards: dict[str, Scorecard] = {pid: Scorecard(pid, since, until) for pid in ids or []}
    if ids == []:
        return cards

    def card(pid: str) -> Scorecard:
        if pid not in cards:
            cards[pid] = Scorecard(pid, since, until)
        return cards[pid]

    def only(col):
        return [] if ids is None else [col.in_(ids)]

    esc = Escalation
    created_in = [esc.created_at >= since, esc.created_at < until, *only(esc.process_id)]
    decided_in = [esc.decided_at >= since, esc.decided_at < until, *only(esc.process_id)]

    actions = select(ChangelogEntry.process_id, func.count()).where(
        ChangelogEntry.human_escalation == false(), ChangelogEntry.timestamp >= since,
        ChangelogEntry.timestamp < until, *only(ChangelogEntry.process_id),
    ).group_by(ChangelogEntry.process_id)
    for pid, n in session.execute(actions):
        card(pid).actions = n

    for pid, n in session.execute(select(esc.process_id, func.count()).where(*created_in).group_by(esc.process_id)):
        card(pid).escalations = n

    outcomes = select(esc.process_id, esc.status, func.count()).where(
        esc.status.in_(OUTCOMES), *decided_in).group_by(esc.process_id, esc.status)
    for pid, status, n in session.execute(outcomes):
        setattr(card(pid), status, n)

    decided = [esc.status.in_(DECISIONS), *decided_in]
    if session.get_bind().dialect.name == "postgresql":
        seconds = cast(extract("epoch", esc.decided_at - esc.created_at), Float)
        q = select(esc.process_id, func.percentile_cont(0.5).within_group(seconds),
                   func.percentile_cont(0.9).within_group(seconds)).where(*decided).group_by(esc.process_id)
        for pid, median, p90 in session.execute(q):
            card(pid).median_decision_s, card(pid).p90_decision_s = _ms(median), _ms(p90)
    else:  # SQLite has no ordered-set aggregates: the same interpolation, in Python
        latencies: dict[str, list[float]] = defaultdict(list)
        for pid, created, decided_at in session.execute(select(esc.process_id, esc.created_at, esc.decided_at)
                                                        .where(*decided)):
            latencies[pid].append((decided_at - created).total_seconds())
        for pid, values in latencies.items():
            values.sort()
            card(pid).median_decision_s = _ms(percentile_cont(values, 0.5))
            card(pid).p90_decision_s = _ms(percentile_cont(values, 0.9))

    _spend(session, card, only, since, until)
    _targets_and_cycle(session, card, decided_in, targets or {})

    repages = (select(esc.process_id, func.count()).select_from(SlackMessage)
               .join(esc, SlackMessage.escalation_id == esc.id)
               .where(SlackMessage.kind == "note", *created_in).group_by(esc.process_id))
    for pid, n in session.execute(repages):
        card(pid).repages = n

    open_rows = session.execute(select(esc.id, esc.process_id, esc.created_at, esc.expires_at)
                                .where(open_clause(), *only(esc.process_id))).all()
    overdue_ids = []
    for esc_id, pid, created, expires in open_rows:
        card(pid).pending += 1
        if is_overdue(created, expires, now):
            overdue_ids.append(esc_id)
    if overdue_ids:
        rows = session.execute(select(esc.id, esc.process_id, esc.status, esc.created_at, esc.expires_at,
                                      esc.request, esc.snapshot).where(esc.id.in_(overdue_ids))
                               .order_by(esc.created_at, esc.id))
        for esc_id, pid, status, created, expires, request, snapshot in rows:
            c = card(pid)
            c.overdue += 1
            summary = ((request or {}).get("action") or {}).get("summary") or ""
            c.overdue_items.append(OverdueItem(esc_id, pid, summary, status, created, expires,
                                               (now - created).total_seconds(), _owner(snapshot or {})))
    return cards


def _spend(session: Session, card, only, since: datetime, until: datetime) -> None:
    esc, cl = Escalation, ChangelogEntry
    q = select(esc.process_id, func.sum(esc.cost_usd)).where(
        esc.created_at >= since, esc.created_at < until, esc.cost_usd.is_not(None), *only(esc.process_id)
    ).group_by(esc.process_id)
    for pid, total in session.execute(q):
        card(pid).escalation_spend = float(total or 0)
    if session.get_bind().dialect.name == "postgresql":
        cost = cast(cast(cl.body, JSONB)["cost_usd"].astext, Float)
    else:
        cost = cast(func.json_extract(cl.body, "$.cost_usd"), Float)
    # Only bodies that mention a cost are parsed (RFC 8785 keeps keys sorted, so it is near the start).
    q = select(cl.process_id, func.sum(cost)).where(
        cl.human_escalation == false(), cl.timestamp >= since, cl.timestamp < until, cl.body.contains('"cost_usd":'),
        *only(cl.process_id)).group_by(cl.process_id)
    for pid, total in session.execute(q):
        card(pid).action_spend = float(total or 0)


def _targets_and_cycle(session: Session, card, decided_in: list, targets: dict[str, int | None]) -> None:
    esc = Escalation
    rows = session.execute(select(esc.process_id, esc.tier, esc.status, esc.created_at, esc.decided_at,
                                  esc.acknowledged_at, esc.started_at)
                           .where(esc.status.in_(("approved", "rejected", "expired", "acknowledged")), *decided_in))
    cycles: dict[str, list[float]] = defaultdict(list)
    for pid, tier, status, created, decided, acked, started in rows:
        c = card(pid)
        target = targets.get(pid) or DEFAULT_TARGET_S[tier]
        c.target_s = target
        answered = acked if tier < 2 and status == "acknowledged" else decided
        if (status == "acknowledged") != (tier < 2) and status != "expired":
            continue  # only an acknowledgement answers tiers 0-1, only a decision tiers 2-4
        c.target_total += 1
        if status != "expired" and answered is not None and (answered - created).total_seconds() <= target:
            c.within_target += 1
        if started is not None and status != "expired":
            cycles[pid].append((decided - started).total_seconds())
    for pid, values in cycles.items():
        values.sort()
        card(pid).median_cycle_s = _ms(percentile_cont(values, 0.5))
        card(pid).p90_cycle_s = _ms(percentile_cont(values, 0.9))


def scorecard(session: Session, process_id: str, since: datetime, until: datetime,
              now: datetime | None = None, targets: dict[str, int | None] | None = None) -> Scorecard:
    return scorecards(session, [process_id], since, until, now, targets)[process_id]


# -- what the digest's hygiene section names --------------------------------------------------------


def unresolved_in_window(session: Session, since: datetime, until: datetime) -> dict[str, set[str]]:
    """People Slack could not resolve when escalations of the window were paged."""
    out: dict[str, set[str]] = {}
    q = select(Escalation.process_id, Escalation.resolved).where(
        Escalation.created_at >= since, Escalation.created_at < until, Escalation.resolved.is_not(None))
    for pid, resolved in session.execute(q):
        for person in (resolved or {}).get("unresolved") or []:
            out.setdefault(pid, set()).add(person)
    return out


def failed_deliveries(session: Session, since: datetime, until: datetime, callbacks: bool
                       ) -> dict[str, list[str]]:
    """Deliveries that failed for good in the window, per process: Slack's errors, or the agents'
    callbacks that were dead-lettered."""
    kind = OutboxItem.kind == "callback" if callbacks else OutboxItem.kind != "callback"
    rows = session.execute(
        select(Escalation.process_id, OutboxItem.last_error)
        .join(Escalation, Escalation.id == OutboxItem.escalation_id)
        .where(OutboxItem.status == "failed", OutboxItem.done_at >= since, OutboxItem.done_at < until, kind)
    ).all()
    out: dict[str, list[str]] = {}
    for pid, error in rows:
        out.setdefault(pid, []).append((error or "unknown error").removeprefix("slack error "))
    return out
