"""Clicks and reject reasons, made durable before Slack hears "received".

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

from bot.domain import escalations
from bot.domain.models import SlackInboxItem
from bot.ops import clock
from bot.ops.db import Database

log = logging.getLogger("aopbot.inbox")

Kind = Literal["approve", "reject", "acknowledge"]
REPLAY_AFTER = timedelta(seconds=10)  # a row this old was left by a crash (applying takes milliseconds)
CLAIM_FOR = timedelta(seconds=30)  # a claim older than this belonged to a crashed applier


def accept(db: Database, kind: Kind, user_id: str, escalation_id: str, reason: str | None = None) -> int:
    with db.transaction() as s:
        row = SlackInboxItem(kind=kind, user_id=user_id, escalation_id=escalation_id, reason=reason,
                             received_at=clock.now())
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


def apply(db: Database, row_id: int) -> escalations.Outcome | None:
    """Apply one accepted click; None when another applier has it (or already applied it)."""
    row = _claim(db, row_id)
    if row is None:
        return None
    # Judged at the moment Slack delivered it, not when it is applied (a backlog, a crash's replay).
    if row.kind == "acknowledge":
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
            log.info("applied a click left by a crash: %s", outcome.result,
                     extra={"escalation_id": outcome.escalation.id if outcome.escalation else None})
    return done
