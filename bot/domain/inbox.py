"""Clicks and reject reasons (and QA verdicts), made durable before Slack hears "received".

The ack waits only for one short INSERT (accept); the decision itself (votes, the chain lock, the
change log) is applied after the ack (apply). A crash between the two leaves the row, and the next
tick on any replica applies it (replay). Applying twice is harmless: the domain answers a repeated
vote, acknowledgement or decision with "already …", and a row is claimed before it is applied so
two replicas do not both try at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, or_, select, update

from bot.domain import escalations, qa
from bot.domain.models import SlackInboxItem
from bot.ops import clock
from bot.ops.db import Database

log = logging.getLogger("aopbot.inbox")

Kind = Literal["approve", "reject", "acknowledge", "qa_ok", "qa_wrong"]
QA_KINDS = ("qa_ok", "qa_wrong")  # their target is a QA review (qa_review_id), not an escalation
REPLAY_AFTER = timedelta(seconds=10)  # a row this old was left by a crash (applying takes milliseconds)
CLAIM_FOR = timedelta(seconds=30)  # a claim older than this belonged to a crashed applier


def accept(db: Database, kind: Kind, user_id: str, target: str | int, reason: str | None = None) -> int:
    """Write a click down; target is the escalation's id, or for a QA verdict the review's."""
    on = {"qa_review_id": int(target)} if kind in QA_KINDS else {"escalation_id": str(target)}
    with db.transaction() as s:
        row = SlackInboxItem(kind=kind, user_id=user_id, reason=reason, received_at=clock.now(), **on)
        s.add(row)
        s.flush()
        return row.id


def _claim(db: Database, row_id: int) -> SlackInboxItem | None:
    now = clock.now()
    with db.transaction() as s:
        won = s.execute(update(SlackInboxItem).where(
            SlackInboxItem.id == row_id,
            or_(SlackInboxItem.claimed_at.is_(None), SlackInboxItem.claimed_at < now - CLAIM_FOR),
        ).values(claimed_at=now)).rowcount
        if not won:
            return None
        row = s.get(SlackInboxItem, row_id)
        s.expunge(row)
        return row


def apply(db: Database, row_id: int) -> escalations.Outcome | qa.Outcome | None:
    """Apply one accepted click; None when another applier has it (or already applied it)."""
    row = _claim(db, row_id)
    if row is None:
        return None
    # Judged at the moment Slack delivered it, not when it is applied (a backlog, a crash's replay).
    if row.kind in QA_KINDS:  # a review has no deadline: the first verdict counts whenever it came
        outcome = qa.review(db, row.qa_review_id, row.user_id, row.kind, row.reason)
    elif row.kind == "acknowledge":
        outcome = escalations.acknowledge(db, row.escalation_id, row.user_id, clicked_at=row.received_at)
    else:
        outcome = escalations.decide(db, row.escalation_id, row.user_id, row.kind, row.reason,
                                     clicked_at=row.received_at)
    with db.transaction() as s:
        s.execute(delete(SlackInboxItem).where(SlackInboxItem.id == row_id))
    return outcome


def replay(db: Database, limit: int = 100) -> int:
    """Apply what a crash left behind (rows older than REPLAY_AFTER); the number applied."""
    now = clock.now()
    with db.transaction() as s:
        ids = list(s.scalars(select(SlackInboxItem.id).where(SlackInboxItem.received_at < now - REPLAY_AFTER)
                             .order_by(SlackInboxItem.id).limit(limit)))
    done = 0
    for row_id in ids:
        try:
            outcome = apply(db, row_id)
        except Exception:
            log.exception("a click left by a crash could not be applied yet; the next tick retries")
            continue
        if outcome is not None:
            done += 1
            esc = getattr(outcome, "escalation", None)
            log.info("applied a click left by a crash: %s", outcome.result,
                     extra={"escalation_id": esc.id if esc else None})
    return done
