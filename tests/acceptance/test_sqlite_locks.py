"""Nothing on SQLite holds up a click's inbox row, which Slack's 3 s ack waits on: a transaction that
only reads never takes the one write lock (every other transaction does, at BEGIN), and no commit
pays for a checkpoint of the write-ahead log (the tick does it)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_tick_moves_the_write_ahead_log_into_the_database_file(services, db_url):
    database_file = Path(db_url.removeprefix("sqlite:///"))
    services.run_timers()
    before = database_file.stat().st_size
    for n in range(40):  # past 1,000 pages (4 MB) of log, where a commit would checkpoint by default
        open_escalation(services, action={"summary": f"Refund {n}"}, inputs={"note": "x" * 120_000})
    assert database_file.stat().st_size == before  # written to the log only: commits do not checkpoint
    assert Path(f"{database_file}-wal").stat().st_size > 1000 * 4096
    services.run_timers()
    assert database_file.stat().st_size > before
