"""Vendor updates change behaviour: when a process's agents start reporting another `model`, the
change is recorded once (who reported it, when, from → to), written to the change log, announced in
the process channel, and its before/after rates are tested on the scorecard.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import changelog
from bot.domain.models import ChangelogEntry, Escalation, ModelChange, ProcessModel, QaReview
from bot.domain.registry import Process
from bot.ops import clock
from bot.ops.db import upsert_insert

UNREPORTED = {"", "unknown", "unspecified"}
CACHE_S = 5.0  # a replica trusts what it last saw this long (another replica may have seen a change)
_seen: dict[str, tuple[float, str]] = {}
_seen_lock = threading.Lock()


def observe(session: Session, proc: Process, model: str | None, reported_by: str, at: datetime) -> bool:
    """Note the model a signal or record carries, inside its transaction. True if it is a change
    (then recorded in model_changes and the change log, and a channel note queued)."""
    if model is None or model.strip().lower() in UNREPORTED:
        return False
    with _seen_lock:
        hit = _seen.get(proc.id)
    if hit and time.monotonic() - hit[0] < CACHE_S and hit[1] == model:
        return False  # the common case: the same model again, no round trip
    # Lock the process's row so two replicas seeing the new model at once record it once.
    session.execute(upsert_insert(session, ProcessModel).values(process_id=proc.id, model=model, since=at)
                    .on_conflict_do_nothing(index_elements=["process_id"]))
    row = session.execute(select(ProcessModel).where(ProcessModel.process_id == proc.id).with_for_update()
                          ).scalar_one()
    # A record dated before the current model took over (a backfill, a late retry) is old news.
    changed = row.model != model and at >= row.since
    if changed:
        before = row.model
        row.model, row.since = model, at
        session.add(ModelChange(process_id=proc.id, from_model=before, to_model=model, at=at,
                                reported_by=reported_by[:200]))
        changelog.append(session, {
            "process_id": proc.id, "timestamp": clock.iso(at), "model": model, "inputs": {},
            "tools_invoked": [], "policy_checks": [], "decision": "model_changed", "human_escalation": True,
            "owner": proc.raci.accountable or proc.raci.escalation or "", "kind": "detected",
            "from_model": before, "to_model": model, "reported_by": reported_by, "tier": proc.tier,
        })
        outbox.enqueue(session, "model_note", f"model:{proc.id}", {  # never ahead of a page in the channel
            "channel": proc.channel, "process_name": proc.name, "from": before, "to": model,
            "reported_by": reported_by})
    with _seen_lock:
        _seen[proc.id] = (time.monotonic(), model)
    return changed


# -- before and after ------------------------------------------------------------------------------

WINDOW = timedelta(days=30)  # each side of a change, at most (and never past the next change)


@dataclass(frozen=True)
class Side:
    escalations: int
    actions: int

    @property
    def total(self) -> int:
        return self.escalations + self.actions

    @property
    def rate(self) -> float:
        return self.escalations / self.total if self.total else 0.0


@dataclass(frozen=True)
class Shift:
    process_id: str
    from_model: str
    to_model: str
    at: datetime
    reported_by: str
    before: Side
    after: Side
    p_value: float | None  # two-proportion z-test of the escalation rates; None without data
    errors_before: tuple[int, int] = (0, 0)  # QA reviews of actions sampled before: (wrong, reviewed)
    errors_after: tuple[int, int] = (0, 0)
    errors_p: float | None = None  # the same test of the QA error rates

    @property
    def significant(self) -> bool:
        return any(p is not None and p < 0.05 for p in (self.p_value, self.errors_p))


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of a pooled two-proportion z-test (x successes of n, each side)."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _side(session: Session, process_id: str, since: datetime, until: datetime) -> Side:
    esc = session.scalar(select(func.count()).select_from(Escalation).where(
        Escalation.process_id == process_id, Escalation.created_at >= since, Escalation.created_at < until)) or 0
    acts = session.scalar(select(func.count()).select_from(ChangelogEntry).where(
        ChangelogEntry.process_id == process_id, ChangelogEntry.human_escalation.is_(False),
        ChangelogEntry.timestamp >= since, ChangelogEntry.timestamp < until)) or 0
    return Side(esc, acts)


def shifts(session: Session, process_ids: list[str] | None, since: datetime, now: datetime) -> list[Shift]:
    """The model changes recorded since `since`, each with the escalation rate before (since the
    change before it, at most 30 days) and after (until the next change or now, at most 30 days)."""
    q = select(ModelChange).where(ModelChange.at >= since, ModelChange.at < now).order_by(ModelChange.at)
    if process_ids is not None:
        q = q.where(ModelChange.process_id.in_(process_ids))
    out = []
    for ch in session.scalars(q):
        prev_at = session.scalar(select(func.max(ModelChange.at)).where(
            ModelChange.process_id == ch.process_id, ModelChange.at < ch.at))
        next_at = session.scalar(select(func.min(ModelChange.at)).where(
            ModelChange.process_id == ch.process_id, ModelChange.at > ch.at))
        start = max(prev_at or ch.at - WINDOW, ch.at - WINDOW)
        end = min(next_at or now, ch.at + WINDOW, now)
        before, after = _side(session, ch.process_id, start, ch.at), _side(session, ch.process_id, ch.at, end)
        p = two_proportion_p(before.escalations, before.total, after.escalations, after.total)
        eb, ea = _errors(session, ch.process_id, start, ch.at), _errors(session, ch.process_id, ch.at, end)
        out.append(Shift(ch.process_id, ch.from_model, ch.to_model, ch.at, ch.reported_by, before, after, p,
                         eb, ea, two_proportion_p(eb[0], eb[1], ea[0], ea[1])))
    return out


def _errors(session: Session, process_id: str, since: datetime, until: datetime) -> tuple[int, int]:
    """(wrong, reviewed) among the QA reviews of actions sampled in the window."""
    wrong, reviewed = session.execute(select(
        func.coalesce(func.sum(case((QaReview.status == "wrong", 1), else_=0)), 0), func.count()).where(
        QaReview.process_id == process_id, QaReview.status.in_(("ok", "wrong")), QaReview.sampled_at >= since,
        QaReview.sampled_at < until)).one()
    return int(wrong), int(reviewed)


def describe(sh: Shift) -> str:
    """One line a reader can judge: the change, both rates with their counts, the p-value."""
    b, a = sh.before, sh.after
    p = "no data yet to compare" if sh.p_value is None else f"p = {sh.p_value:.3g}"
    flag = " :warning: significant shift" if sh.significant else ""
    (wb, nb), (wa, na) = sh.errors_before, sh.errors_after
    errors = ""
    if nb or na:
        ep = "" if sh.errors_p is None else f", p = {sh.errors_p:.3g}"
        errors = (f"; QA error rate {_pct(wb, nb)} before ({wb} wrong of {nb}) vs {_pct(wa, na)} after "
                  f"({wa} of {na}){ep}")
    return (f"model {sh.from_model} → {sh.to_model} on {clock.iso(sh.at)} (reported by {sh.reported_by}): "
            f"escalation rate {b.rate:.1%} before ({b.escalations} of {b.total}) vs {a.rate:.1%} after "
            f"({a.escalations} of {a.total}), {p}{errors}{flag}")


def _pct(wrong: int, n: int) -> str:
    return f"{wrong / n:.1%}" if n else "–"
