"""The governance model's questions for one process: who gets paged, what breaks, how fast we roll
back (the SLO card), what is missing to answer them (hygiene), and when it is due a review or a
"scale or kill" call. Data only; surfaces render it.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.domain import changelog, qa
from bot.domain.models import BoundaryViolation, Escalation, PersonCheck, ProcessEvent, RegistrySnapshot
from bot.domain.processes import HomeData, NotAllowed, Resolver, State, control_entry, may_pause, state_of
from bot.domain.registry import PILOT_DAYS, Process, Registry
from bot.domain.scorecard import Scorecard, scorecard
from bot.ops import clock
from bot.ops.db import Database, upsert_insert

SLO_WINDOW = timedelta(days=30)
# A pause counts as the rollback of a page when it comes within this long of the page.
PAGE_TO_PAUSE_HORIZON = timedelta(hours=24)
PERSON_RECHECK = timedelta(days=1)


@dataclass(frozen=True)
class Answers:
    """A process's governance answers, from the registry or from an escalation's snapshot (so an
    escalation's thread shows the answers it was raised under)."""

    id: str
    name: str
    tier: int
    capability: str | None
    allowed_tools: list[str] | None
    blast_radius: str | None
    rollback: str | None
    escalation: str | None
    accountable: str | None
    levels: list[dict[str, Any]]
    repeat: int = 0
    stage: str | None = None
    people: tuple[str, ...] = ()  # everyone the registry names on it

    @classmethod
    def of(cls, proc: Process) -> Answers:
        return cls(proc.id, proc.name, proc.tier, proc.capability, proc.allowed_tools, proc.blast_radius,
                   proc.rollback, proc.raci.escalation, proc.raci.accountable, proc.levels(), proc.repeat,
                   proc.stage, tuple(proc.people()))

    @classmethod
    def from_snapshot(cls, process_id: str, snap: dict[str, Any]) -> Answers:
        raci = snap.get("raci") or {}
        gov = snap.get("governance") or {}
        return cls(process_id, snap.get("name", process_id), snap.get("tier", 0), gov.get("capability"),
                   gov.get("allowed_tools"), gov.get("blast_radius"), gov.get("rollback"), raci.get("escalation"),
                   raci.get("accountable"), snap.get("levels") or [], snap.get("repeat", 0), gov.get("stage"),
                   tuple(gov.get("people") or ()))


@dataclass(frozen=True)
class SloCard:
    answers: Answers
    state: State
    pauses: int  # pauses after a page in the window
    median_page_to_pause_s: float | None
    missing: list[str]  # what keeps the card from answering (hygiene)
    scorecard: Scorecard | None = None
    violations: int = 0  # tools refused outside allowed_tools in the window
    last_review: date | None = None
    review_due: bool = False
    error_rate: qa.ErrorRate | None = None  # over the window, with the scorecard


def page_to_pause(session: Session, process_id: str, now: datetime) -> tuple[int, float | None]:
    """Pauses in the last 30 days that followed a page of the process (within a day), and the median
    seconds from that page to the pause: how fast a bad call was actually stopped. One query when
    nothing was paused (the usual case), two otherwise."""
    pauses = list(session.scalars(select(ProcessEvent.at).where(
        ProcessEvent.process_id == process_id, ProcessEvent.event == "paused", ProcessEvent.at >= now - SLO_WINDOW,
        ProcessEvent.at <= now)))
    if not pauses:
        return 0, None
    pages = list(session.scalars(select(Escalation.created_at).where(
        Escalation.process_id == process_id, Escalation.created_at >= min(pauses) - PAGE_TO_PAUSE_HORIZON,
        Escalation.created_at <= max(pauses)).order_by(Escalation.created_at)))
    gaps = []
    for at in pauses:
        i = bisect.bisect_right(pages, at)  # the last page at or before the pause
        if i and at - pages[i - 1] <= PAGE_TO_PAUSE_HORIZON:
            gaps.append((at - pages[i - 1]).total_seconds())
    return len(gaps), (statistics.median(gaps) if gaps else None)


PERSON_PROBLEMS = {"deleted": "has left (deactivated in Slack)", "bot": "is a bot, not a person",
                   "not_found": "cannot be resolved in Slack"}


def person_states(session: Session, people: Iterable[str]) -> dict[str, str]:
    wanted = list(dict.fromkeys(people))
    if not wanted:
        return {}
    rows = session.execute(select(PersonCheck.person, PersonCheck.state).where(PersonCheck.person.in_(wanted)))
    return {person: state for person, state in rows}


def missing_answers(a: Answers, states: dict[str, str]) -> list[str]:
    """What the card cannot answer, and owners who cannot answer a page (nothing for a retired one)."""
    out: list[str] = []
    if a.stage == "retired":
        return out
    if not a.escalation:
        out.append("no escalation owner in the registry (raci.escalation)")
    if not (a.blast_radius or "").strip():
        out.append("no blast_radius: say what breaks if it goes wrong")
    if a.tier >= 2 and not (a.rollback or "").strip():
        out.append(f"no rollback at tier {a.tier}: say how to undo what it does")
    roles = {a.escalation: "escalation owner", a.accountable: "accountable owner"}
    for person in a.people:
        problem = PERSON_PROBLEMS.get(states.get(person, ""))
        if problem:
            out.append(f"{roles.get(person, 'registry person')} {person} {problem}")
    return out


def first_seen(session: Session) -> dict[str, datetime]:
    """When each process first appeared in a registry aopbot accepted (snapshots are few and small)."""
    out: dict[str, datetime] = {}
    for content, loaded_at in session.execute(select(RegistrySnapshot.content, RegistrySnapshot.loaded_at)
                                              .order_by(RegistrySnapshot.id)):
        for p in (content or {}).get("processes", []):
            if isinstance(p, dict) and isinstance(p.get("id"), str):
                out.setdefault(p["id"], loaded_at)
    return out


def last_review(session: Session, proc: Process) -> date | None:
    """The later of the registry's review.last and the last `/aop review`."""
    at = session.scalar(select(func.max(ProcessEvent.at)).where(ProcessEvent.process_id == proc.id,
                                                                ProcessEvent.event == "reviewed"))
    dates = [d for d in (proc.review.last, at.date() if at else None) if d]
    return max(dates) if dates else None


def review_due(proc: Process, last: date | None, now: datetime, seen: datetime | None = None) -> bool:
    """Its last review is older than review.every; never reviewed, counted from `started`, else from
    when aopbot first saw it in the registry (seen)."""
    if proc.retired:
        return False
    start = last or proc.started or (seen.date() if seen else None)
    if start is None:
        return False
    return (now.date() - start).days * 86400 > proc.review_every_seconds()


def pilot_due(proc: Process, now: datetime) -> bool:
    """A pilot older than 90 days: time to scale it or kill it."""
    return proc.stage == "pilot" and proc.started is not None and (now.date() - proc.started).days > PILOT_DAYS


def violations(session: Session, process_id: str, since: datetime) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(BoundaryViolation.count), 0)).where(
        BoundaryViolation.process_id == process_id, BoundaryViolation.day >= since.date())) or 0)


def slo_card(session: Session, answers: Answers, now: datetime | None = None, proc: Process | None = None,
             with_scorecard: bool = False, seen: dict[str, datetime] | None = None) -> SloCard:
    """seen: first_seen(session), when the caller builds several cards (it reads every snapshot)."""
    now = now or clock.now()
    pauses, median = page_to_pause(session, answers.id, now)
    card = scorecard(session, answers.id, now - SLO_WINDOW, now, now) if with_scorecard else None
    errors = qa.error_rates(session, [answers.id], now - SLO_WINDOW, now)[answers.id] if with_scorecard else None
    last = last_review(session, proc) if proc else None
    if proc is not None and seen is None:
        seen = first_seen(session)
    due = review_due(proc, last, now, seen.get(proc.id)) if proc and seen is not None else False
    return SloCard(answers, state_of(session, answers.id), pauses, median,
                   missing_answers(answers, person_states(session, answers.people)), card,
                   violations(session, answers.id, now - SLO_WINDOW), last, due, errors)


HOME_CARDS = 15  # App Home shows the SLO card of this many of a person's processes


def with_slo_cards(db: Database, data: HomeData) -> HomeData:
    """App Home's data with the SLO card of each process the person holds a role in."""
    now = clock.now()
    with db.transaction() as s:
        seen = first_seen(s)  # once, not per card
        cards = {p.id: slo_card(s, Answers.of(p), now, proc=p, seen=seen) for p, _roles in data.owned[:HOME_CARDS]}
    return replace(data, slo=cards)


# -- reviews -----------------------------------------------------------------------------------------


def record_review(db: Database, proc: Process, user_id: str, note: str, resolve: Resolver | None) -> datetime:
    """`/aop review`: the accountable or escalation owner says the process was reviewed; audited in
    the process's trail and its change log."""
    if not may_pause(proc, user_id, resolve):
        raise NotAllowed(proc.raci.accountable or proc.raci.escalation or "")
    now = clock.now()
    with db.transaction() as s:
        s.add(ProcessEvent(process_id=proc.id, event="reviewed", by=user_id, at=now, reason=note))
        changelog.append(s, control_entry(proc, "reviewed", user_id, now, note))
    return now


@dataclass(frozen=True)
class Due:
    process_id: str
    name: str
    what: str


def due_items(session: Session, registry: Registry, now: datetime) -> list[Due]:
    """Reviews past their cadence and pilots past 90 days, for the digest."""
    out = []
    seen = first_seen(session)
    for proc in sorted(registry.all(), key=lambda p: p.id):
        last = last_review(session, proc)
        if review_due(proc, last, now, seen.get(proc.id)):
            every = proc.review_every_seconds() // 86400
            since = f"last reviewed {last.isoformat()}" if last else "never reviewed"
            out.append(Due(proc.id, proc.name, f"review due: {since}, tier {proc.tier} reviews every {every} days"
                           f" (`/aop review {proc.id} <note>`)"))
        if pilot_due(proc, now):
            days = (now.date() - proc.started).days
            out.append(Due(proc.id, proc.name, f"pilot for {days} days (started {proc.started.isoformat()}): "
                           "scale it or kill it (set stage: scaled or retired)"))
    return out


# -- people who left -----------------------------------------------------------------------------------


def registry_people(registry: Registry) -> list[str]:
    out: list[str] = []
    for proc in registry.all():
        out += [p for p in proc.people() if p not in out]
    return out


def people_to_check(session: Session, registry: Registry, now: datetime) -> list[str]:
    """Registry people never checked, or not checked for a day."""
    people = registry_people(registry)
    fresh = set(session.scalars(select(PersonCheck.person).where(PersonCheck.person.in_(people),
                                                                 PersonCheck.checked_at > now - PERSON_RECHECK)))
    return [p for p in people if p not in fresh]


def checked_since(session: Session, people: list[str], since: datetime) -> set[str]:
    return set(session.scalars(select(PersonCheck.person).where(PersonCheck.person.in_(people),
                                                                PersonCheck.checked_at >= since)))


def store_person_check(session: Session, person: str, state: str) -> None:
    now = clock.now()
    stmt = upsert_insert(session, PersonCheck).values(person=person, state=state, checked_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["person"], set_={"state": state, "checked_at": now}))
