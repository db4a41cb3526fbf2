"""The paging timeline of one escalation: which level is paged when, fired exactly once.

The schedule comes from the escalation's frozen policy (levels with cumulative `after`, then
`repeat` cycles). A level at offset 0 is paged together with the post (the page job does it);
every later step is fired by the timer through a conditional UPDATE on page_step, so racing replicas
fire it once. Also here: who the paged people are (groups and emails resolved once, snapshotted).
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.delivery import outbox
from bot.domain import policy
from bot.domain.models import Escalation, OutboxItem
from bot.domain.registry import is_user_id
from bot.ops import clock
from bot.ops.db import Database


def schedule_of(esc: Escalation) -> list[policy.PageStep]:
    return _schedule(esc.snapshot)


def _schedule(snapshot: dict[str, Any]) -> list[policy.PageStep]:
    return policy.page_schedule([lvl["after"] for lvl in snapshot["levels"]], snapshot.get("repeat", 0))


def insert_with_first_page(session: Session, row: dict[str, Any]) -> None:
    """Insert a new escalation (its column values) with its first page queued. The first level goes
    with the page when its offset is 0 (not a tick later). On PostgreSQL both rows go in one
    statement (a data-modifying CTE): one round trip on the signal path instead of an ORM flush each."""
    schedule = _schedule(row["snapshot"])
    first_now = schedule[0].offset_s == 0
    row["page_step"] = 1 if first_now else 0
    step_at = schedule[row["page_step"]].offset_s if row["page_step"] < len(schedule) else None
    row["next_page_at"] = row["created_at"] + timedelta(seconds=step_at) if step_at is not None else None
    page = outbox.new_row("page", row["snapshot"]["channel"], {"first_level": first_now},
                              escalation_id=row["id"], trace_id=row["request"].get("trace_id"))
    conn = session.connection()  # Core, not the ORM's bulk path: this runs once per signal
    if conn.dialect.name == "postgresql":
        conn.execute(_first_page_statement(tuple(row)), {**row, **{f"page_{k}": v for k, v in page.items()}})
    else:  # SQLite: no data-modifying CTEs (and no round trips to save)
        conn.execute(insert(Escalation.__table__), row)
        conn.execute(insert(OutboxItem.__table__), page)


@functools.cache
def _first_page_statement(columns: tuple[str, ...]):
    """The escalation and its page in one statement, built once: a statement object reused keeps its
    compiled form and cache key (building it per signal cost more CPU than the insert itself)."""
    esc, box = Escalation.__table__, OutboxItem.__table__
    new = insert(esc).values({c: bindparam(c, type_=esc.c[c].type) for c in columns}) \
        .returning(esc.c.id).cte("new_escalation")
    cols = [c for c in box.columns if c.name not in ("id", "locked_until", "locked_by", "done_at", "last_error")]
    return insert(box).from_select(
        [c.name for c in cols],
        select(*(new.c.id if c.name == "escalation_id" else bindparam(f"page_{c.name}", type_=c.type) for c in cols)))


def _advance_paging(session: Session, esc: Escalation, schedule: list[policy.PageStep]) -> bool:
    """Fire the escalation's current step exactly once (a conditional UPDATE on page_step) and
    queue its notification. False if another replica fired it first or it is no longer pending."""
    step = esc.page_step
    nxt = schedule[step + 1].offset_s if step + 1 < len(schedule) else None
    result = session.execute(
        update(Escalation)
        .where(Escalation.id == esc.id, Escalation.page_step == step, Escalation.status == "pending")
        .values(page_step=step + 1,
                next_page_at=esc.created_at + timedelta(seconds=nxt) if nxt is not None else None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    page = schedule[step]
    # Keyed by escalation, not channel: pages of different escalations never wait on each other.
    outbox.enqueue(session, "notify", f"esc:{esc.id}",
                   {"step": step, "level": page.level, "cycle": page.cycle}, escalation_id=esc.id,
                   trace_id=esc.trace_id)
    session.refresh(esc)
    return True


def repage_due(db: Database, limit: int = 200) -> int:
    """Fire every paging step that is due (late ones too, in order). Safe on every replica at once."""
    now = clock.now()
    fired = 0
    with db.transaction() as s:
        q = (select(Escalation).where(Escalation.status == "pending", Escalation.next_page_at <= now)
             .order_by(Escalation.next_page_at).limit(limit))
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)
        for esc in list(s.scalars(q)):
            schedule = schedule_of(esc)
            while (esc.next_page_at is not None and esc.next_page_at <= now
                   and esc.page_step < len(schedule) and _advance_paging(s, esc, schedule)):
                fired += 1
    return fired


def resolved_people(esc: Escalation) -> dict[str, Any]:
    """Approvers etc. as Slack user IDs. Before the page step resolves groups and emails, only
    literal user IDs count (fail closed)."""
    if esc.resolved:
        return esc.resolved
    snap = esc.snapshot

    def users(people: list[str]) -> list[str]:
        return [p for p in people if is_user_id(p)]

    return {
        "approvers": users(snap["approvers"]),
        "compliance": users(snap["compliance"]),
        "levels": [users(lvl["notify"]) for lvl in snap["levels"]],
        "unresolved": [],
    }


def responders(esc: Escalation) -> set[str]:
    people = resolved_people(esc)
    out = set(people["approvers"])
    for lvl in people["levels"]:
        out.update(lvl)
    return out


def responder_people(esc: Escalation) -> list[str]:
    people: list[str] = []
    for lvl in esc.snapshot["levels"]:
        people += [p for p in lvl["notify"] if p not in people]
    people += [p for p in esc.snapshot["approvers"] if p not in people]
    return people


def set_resolved(session: Session, esc: Escalation, resolved: dict[str, Any]) -> None:
    """The escalation's people as resolved when first paged, kept from then on: the first writer
    wins (the card must name the same people however often it is rebuilt)."""
    done = session.execute(update(Escalation).where(Escalation.id == esc.id, Escalation.resolved.is_(None))
                           .values(resolved=resolved))
    if done.rowcount == 1:
        set_committed_value(esc, "resolved", resolved)
    else:
        session.refresh(esc, ["resolved"])
