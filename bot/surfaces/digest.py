"""The daily digest (docs/slack.md): built as data here, rendered by surfaces.digest_blocks, sent through
the outbox by delivery.slack_digest.

Exactly once per local day across replicas and restarts: the sender inserts that day's digest_runs
row and queues the posts in the same transaction. The row's key is the local date, so a second
replica (or a restarted one) gets a unique violation and sends nothing; a crash before commit leaves
no row, and the next tick tries again.

The digest is off while AOP_DIGEST_CHANNEL is unset: neither the channel post nor the owner DMs go
out (logged once), because a bot whose operator never asked for a digest should not start messaging
people every morning. `aopbot digest --dry-run` works either way.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, false, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import changelog, governance, model_changes, qa, scorecard
from bot.domain.models import ChangelogEntry, DigestRun, Escalation
from bot.domain.registry import Registry
from bot.domain.scorecard import OverdueItem, Scorecard, scorecards
from bot.ops import clock
from bot.ops.config import Settings
from bot.ops.db import Database
from bot.surfaces.blocks import duration

log = logging.getLogger("aopbot.digest")

DAYS = 7  # sparkline length and baseline span
JUMP_FACTOR = 2.0  # today's rate above this many times the 7-day rate is a jump...
JUMP_MIN_ESCALATIONS = 3  # ...when there are at least this many escalations (no alarms on 1 of 2)
OUTBOX_KIND = "digest"

_warned_no_channel = False


@dataclass
class ProcessLine:
    process_id: str
    name: str
    card: Scorecard
    daily: list[int]  # escalations per day, oldest first; the last is the digest's own day
    baseline_rate: float  # escalation rate over the DAYS days before the window
    escalation_owner: str | None
    accountable: str | None
    in_registry: bool = True

    @property
    def jump(self) -> bool:
        c = self.card
        return c.escalations >= JUMP_MIN_ESCALATIONS and c.escalation_rate > JUMP_FACTOR * self.baseline_rate


@dataclass(frozen=True)
class Hygiene:
    process_id: str
    name: str
    problem: str


@dataclass
class Digest:
    local_date: date
    timezone: str
    since: datetime
    until: datetime
    generated_at: datetime
    lines: list[ProcessLine]
    hygiene: list[Hygiene] = field(default_factory=list)
    # Each change-log chain's head ({process_id, seq, hash}) when the day was claimed: published with
    # the post, so `aopbot changelog verify --from-slack` can hold the database to them.
    heads: list[dict[str, Any]] = field(default_factory=list)
    due: list[Hygiene] = field(default_factory=list)  # reviews past their cadence, pilots past 90 days
    # Targets missed (under 90 % within the decision target), budgets overspent, model changes with
    # their before/after rates: what the governance model asks an owner to look at.
    flags: list[Hygiene] = field(default_factory=list)
    qa_lines: list[qa.QaLine] = field(default_factory=list)  # sampling QA: error rates, reviews overdue

    @property
    def totals(self) -> dict[str, int]:
        keys = ("actions", "escalations", "approved", "rejected", "expired", "acknowledged", "cancelled",
                "repages", "pending", "overdue")
        return {k: sum(getattr(ln.card, k) for ln in self.lines) for k in keys}

    @property
    def quiet(self) -> bool:
        return all(ln.card.quiet for ln in self.lines)

    @property
    def active(self) -> list[ProcessLine]:
        return [ln for ln in self.lines if not ln.card.quiet]

    @property
    def overdue(self) -> list[tuple[ProcessLine, OverdueItem]]:
        items = [(ln, it) for ln in self.lines for it in ln.card.overdue_items]
        return sorted(items, key=lambda pair: pair[1].created_at)

    @property
    def jumps(self) -> list[ProcessLine]:
        return [ln for ln in self.lines if ln.jump]

    def overdue_by_owner(self) -> dict[str, list[tuple[ProcessLine, OverdueItem]]]:
        out: dict[str, list[tuple[ProcessLine, OverdueItem]]] = {}
        for ln, it in self.overdue:
            if it.owner:
                out.setdefault(it.owner, []).append((ln, it))
        return out

    # -- the outbox payload: the digest as it was when the day was claimed ----------------------
    def to_payload(self) -> dict[str, Any]:
        return {
            "local_date": self.local_date.isoformat(), "timezone": self.timezone,
            "since": clock.iso(self.since), "until": clock.iso(self.until),
            "generated_at": clock.iso(self.generated_at),
            "lines": [_line_to_dict(ln) for ln in self.lines],
            "hygiene": [[h.process_id, h.name, h.problem] for h in self.hygiene],
            "heads": self.heads,
            "due": [[h.process_id, h.name, h.problem] for h in self.due],
            "flags": [[h.process_id, h.name, h.problem] for h in self.flags],
            "qa": [ln.to_dict() for ln in self.qa_lines],
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Digest:
        since, until = _dt(p["since"]), _dt(p["until"])
        return cls(date.fromisoformat(p["local_date"]), p["timezone"], since, until, _dt(p["generated_at"]),
                   [_line_from_dict(d, since, until) for d in p["lines"]], [Hygiene(*h) for h in p["hygiene"]],
                   p.get("heads", []), [Hygiene(*h) for h in p.get("due", [])],
                   [Hygiene(*h) for h in p.get("flags", [])],
                   qa_lines=[qa.QaLine.from_dict(d) for d in p.get("qa", [])])


_CARD_INTS = ("actions", "escalations", "approved", "rejected", "expired", "acknowledged", "cancelled", "repages",
              "pending", "overdue")
# Added after the first release: a payload queued by it lacks them (read with their defaults).
_CARD_EXTRAS = ("action_spend", "escalation_spend", "target_s", "target_total", "within_target", "median_cycle_s",
                "p90_cycle_s")


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _item_to_dict(it: OverdueItem) -> dict[str, Any]:
    return {"id": it.id, "process_id": it.process_id, "summary": it.summary, "status": it.status,
            "created_at": clock.iso(it.created_at), "expires_at": clock.iso(it.expires_at), "age_s": it.age_s,
            "owner": it.owner}


def item_from_dict(d: dict[str, Any]) -> OverdueItem:
    return OverdueItem(d["id"], d["process_id"], d["summary"], d["status"], _dt(d["created_at"]),
                       _dt(d["expires_at"]), d["age_s"], d["owner"])


def _line_to_dict(ln: ProcessLine) -> dict[str, Any]:
    c = ln.card
    return {"process_id": ln.process_id, "name": ln.name, "daily": ln.daily, "baseline_rate": ln.baseline_rate,
            "escalation_owner": ln.escalation_owner, "accountable": ln.accountable, "in_registry": ln.in_registry,
            "card": {**{k: getattr(c, k) for k in _CARD_INTS + _CARD_EXTRAS}, "median_decision_s": c.median_decision_s,
                     "p90_decision_s": c.p90_decision_s,
                     "overdue_items": [_item_to_dict(it) for it in c.overdue_items]}}


def _line_from_dict(d: dict[str, Any], since: datetime, until: datetime) -> ProcessLine:
    cd = d["card"]
    card = Scorecard(d["process_id"], since, until, **{k: cd[k] for k in _CARD_INTS},
                     **{k: cd[k] for k in _CARD_EXTRAS if k in cd},
                     median_decision_s=cd["median_decision_s"], p90_decision_s=cd["p90_decision_s"],
                     overdue_items=[item_from_dict(i) for i in cd["overdue_items"]])
    return ProcessLine(d["process_id"], d["name"], card, d["daily"], d["baseline_rate"], d["escalation_owner"],
                       d["accountable"], d["in_registry"])


# -- windows ---------------------------------------------------------------------------------------


def scheduled_at(local_date: date, tz: ZoneInfo, digest_time: str) -> datetime:
    """The digest moment of a local day. A time that does not exist that day (spring forward) lands
    just after the gap; one that happens twice (fall back) is its first occurrence."""
    return datetime.combine(local_date, time.fromisoformat(digest_time), tzinfo=tz).astimezone(tz)


def days_back(until: datetime, tz: ZoneInfo, n: int) -> datetime:
    """The same wall-clock time n local days earlier: a "day" is 23 or 25 hours across DST."""
    local = until.astimezone(tz)
    return datetime.combine(local.date() - timedelta(days=n), local.time(), tzinfo=tz)


# -- building ----------------------------------------------------------------------------------------


def _history(session: Session, ids: list[str], bounds: list[datetime]) -> tuple[dict, dict, dict]:
    """Escalations per day for the sparkline, and actions + escalations over the baseline days.

    bounds[k] is k days before the window's end (bounds[0] = until, bounds[1] = since); two grouped
    queries with one conditional sum per day, not one query a day."""
    esc = Escalation
    day_sums = [func.sum(case((and_(esc.created_at >= bounds[k + 1], esc.created_at < bounds[k]), 1), else_=0))
                for k in range(DAYS)]
    baseline_esc = func.sum(case((esc.created_at < bounds[1], 1), else_=0))
    q = (select(esc.process_id, baseline_esc, *day_sums)
         .where(esc.created_at >= bounds[DAYS + 1], esc.created_at < bounds[0], esc.process_id.in_(ids))
         .group_by(esc.process_id))
    daily: dict[str, list[int]] = {}
    prev_esc: dict[str, int] = {}
    for pid, before, *days in session.execute(q):
        daily[pid] = [int(n or 0) for n in reversed(days)]
        prev_esc[pid] = int(before or 0)
    cl = ChangelogEntry
    q = (select(cl.process_id, func.count())
         .where(cl.human_escalation == false(), cl.timestamp >= bounds[DAYS + 1], cl.timestamp < bounds[1],
                cl.process_id.in_(ids))
         .group_by(cl.process_id))
    prev_actions = {pid: n for pid, n in session.execute(q)}
    return daily, prev_esc, prev_actions


def build_digest(session: Session, registry: Registry, since: datetime, until: datetime, timezone: str,
                 now: datetime | None = None) -> Digest:
    """The digest over [since, until): every registry process, plus any other process with data."""
    now = now or clock.now()
    tz = ZoneInfo(timezone)
    procs = {p.id: p for p in registry.all()}
    cards = scorecards(session, None, since, until, now, {p.id: p.approvals.target for p in registry.all()})
    ids = list(procs) + sorted(pid for pid in cards if pid not in procs)
    bounds = [until] + [days_back(until, tz, k) for k in range(1, DAYS + 2)]
    bounds[1] = since  # the caller's window is the authority on "today"
    daily, prev_esc, prev_actions = _history(session, ids, bounds)
    lines = []
    for pid in ids:
        proc = procs.get(pid)
        card = cards.get(pid) or Scorecard(pid, since, until)
        base_esc, base_act = prev_esc.get(pid, 0), prev_actions.get(pid, 0)
        lines.append(ProcessLine(
            pid, proc.name if proc else pid, card, daily.get(pid, [0] * DAYS),
            base_esc / (base_esc + base_act) if base_esc + base_act else 0.0,
            proc.raci.escalation if proc else None, proc.raci.accountable if proc else None, proc is not None))
    hygiene = []
    states = governance.person_states(session, governance.registry_people(registry))
    for proc in registry.all():  # what keeps each SLO card from answering (docs/slack.md#the-slo-card)
        for problem in governance.missing_answers(governance.Answers.of(proc), states):
            hygiene.append(Hygiene(proc.id, proc.name, problem))
    for pid, people in sorted(scorecard.unresolved_in_window(session, since, until).items()):
        name = procs[pid].name if pid in procs else pid
        hygiene.append(Hygiene(pid, name, "Slack could not resolve " + ", ".join(sorted(people))
                               + " when paging"))
    for pid, errors in sorted(scorecard.failed_deliveries(session, since, until, callbacks=False).items()):
        name = procs[pid].name if pid in procs else pid
        kinds = ", ".join(sorted(set(errors)))
        hygiene.append(Hygiene(pid, name, f"Slack refused {len(errors)} deliver{'y' if len(errors) == 1 else 'ies'} "
                               f"for good ({kinds}); is the bot in the channel?"))
    for pid, errors in sorted(scorecard.failed_deliveries(session, since, until, callbacks=True).items()):
        name = procs[pid].name if pid in procs else pid
        hygiene.append(Hygiene(pid, name, f"{len(errors)} callback(s) to the agent dead-lettered "
                               f"({errors[-1][:120]}); see `aopbot outbox list --status failed`"))
    heads = [changelog.anchor_to_dict(a) for a in changelog.heads(session)]
    due = [Hygiene(d.process_id, d.name, d.what) for d in governance.due_items(session, registry, now)]
    flags = _flags(session, procs, lines, since, until, now)
    qa_lines = qa.digest_lines(session, registry, until, now)
    return Digest(now.astimezone(tz).date(), timezone, since, until, now, lines, hygiene, heads, due, flags,
                  qa_lines=qa_lines)


TARGET_FLOOR = 0.9  # a process deciding fewer than this share within its target is listed


def _flags(session: Session, procs: dict, lines: list[ProcessLine], since: datetime, until: datetime,
           now: datetime) -> list[Hygiene]:
    out = []
    for ln in lines:
        c, proc = ln.card, procs.get(ln.process_id)
        if c.attainment is not None and c.attainment < TARGET_FLOOR:
            out.append(Hygiene(ln.process_id, ln.name, f"{c.attainment:.1%} decided within the "
                               f"{duration(c.target_s)} target ({c.within_target} of {c.target_total})"))
        budget = proc.budget.daily_usd if proc else None
        if budget is not None and c.spend > budget:
            out.append(Hygiene(ln.process_id, ln.name, f"spent ${c.spend:,.2f} against a daily budget of "
                               f"${budget:,.2f}"))
    for sh in model_changes.shifts(session, None, since, until):
        name = procs[sh.process_id].name if sh.process_id in procs else sh.process_id
        out.append(Hygiene(sh.process_id, name, model_changes.describe(sh)))
    return out


def check_owners(digest: Digest, resolve: Callable[[str], list[str] | None]) -> Digest:
    """Add a hygiene line for every registry owner Slack cannot resolve. resolve is a Slack lookup
    (delivery.directory.Directory.resolve), so this runs outside any database transaction."""
    for ln in digest.lines:
        if not ln.in_registry:
            continue
        for role, person in (("escalation owner", ln.escalation_owner), ("accountable", ln.accountable)):
            if person and resolve(person) is None:
                problem = f"{role} {person} cannot be resolved in Slack"
                named = any(h.process_id == ln.process_id and f" {person} " in h.problem for h in digest.hygiene)
                if not named:  # the people check may have said so already
                    digest.hygiene.append(Hygiene(ln.process_id, ln.name, problem))
    return digest


def window_for(now: datetime, settings: Settings) -> tuple[date, datetime, datetime]:
    """(local date, since, until) of the digest sent at now. Windows are anchored to the digest
    time, so a digest sent late (after a restart) still covers exactly the day since the last one."""
    tz = ZoneInfo(settings.aop_timezone)
    local_date = now.astimezone(tz).date()
    due = scheduled_at(local_date, tz, settings.aop_digest_time)
    until = due if now >= due else now  # early only when an operator runs `aopbot digest` by hand
    return local_date, days_back(until, tz, 1), until


# -- sending -------------------------------------------------------------------------------------------


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claimed(db: Database, local_date: date) -> DigestRun | None:
    with db.transaction() as s:
        run = s.get(DigestRun, local_date)
        if run is not None:
            s.expunge(run)
        return run


def send_digest(db: Database, registry: Registry, settings: Settings, now: datetime | None = None) -> bool:
    """Claim today's digest and queue its posts, in one transaction. False if the day was already
    claimed (by any replica, now or before a restart)."""
    now = now or clock.now()
    local_date, since, until = window_for(now, settings)
    channel = settings.aop_digest_channel
    try:
        with db.transaction() as s:
            s.add(DigestRun(local_date=local_date, claimed_by=_worker(), claimed_at=now))
            s.flush()  # the unique key decides here; a concurrent claimer waits, then fails
            digest = build_digest(s, registry, since, until, settings.aop_timezone, now)
            if channel:
                outbox.enqueue(s, OUTBOX_KIND, channel, {"to": "channel", "channel": channel,
                                                         "digest": digest.to_payload()})
            for owner, items in digest.overdue_by_owner().items():
                outbox.enqueue(s, OUTBOX_KIND, f"digest:{owner}", {
                    "to": "owner", "owner": owner, "local_date": local_date.isoformat(),
                    "items": [{**_item_to_dict(it), "process_name": ln.name} for ln, it in items]})
    except IntegrityError:
        return False
    log.info("daily digest for %s claimed and queued (%d processes, %d overdue)", local_date,
             len(digest.lines), len(digest.overdue))
    return True


def maybe_send_digest(db: Database, registry: Registry, settings: Settings, now: datetime | None = None) -> bool:
    """Send today's digest if its time has come and nobody has sent it. Called on every tick and by
    the scheduler's cron job at the exact time; never raises, so a digest problem cannot stop a tick."""
    global _warned_no_channel
    try:
        if not settings.aop_digest_channel:
            if not _warned_no_channel:
                log.info("AOP_DIGEST_CHANNEL is not set: the daily digest is off")
                _warned_no_channel = True
            return False
        now = now or clock.now()
        tz = ZoneInfo(settings.aop_timezone)
        local_date = now.astimezone(tz).date()
        if now < scheduled_at(local_date, tz, settings.aop_digest_time) or claimed(db, local_date) is not None:
            return False
        return send_digest(db, registry, settings, now)
    except Exception:
        log.exception("daily digest failed; the next tick retries")
        return False
