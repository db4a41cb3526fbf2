"""A transaction that only reads never holds up a writer (on SQLite every other transaction takes
the one write lock at BEGIN): a card being built or a long-poll's view must not delay a click's
inbox row, which Slack's 3 s ack waits on."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from bot.domain import inbox
from bot.domain.models import SlackInboxItem
from tests.helpers import open_escalation


def test_a_click_is_written_while_a_reader_is_open(services):
    esc_id = open_escalation(services)
    written = threading.Event()

    def click() -> None:
        inbox.accept(services.db, "approve", "U0ESCOWNER", esc_id)
        written.set()

    with services.db.reading() as s:
        s.scalar(select(func.count()).select_from(SlackInboxItem))  # the read has begun
        writer = threading.Thread(target=click)
        writer.start()
        # Inside the read: a reader that held the write lock would keep the click waiting until
        # the read ends (or fail it as "database is locked").
        assert written.wait(25), "the click's write waited for a reader"
    writer.join()
