"""The scheduler runs a delivery pass early when the last one said when its next row is due."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from bot.ops import clock
from bot.ops.scheduler import Scheduler


def test_a_delivery_pass_runs_again_when_its_next_row_is_due_not_at_the_interval():
    runs: list[float] = []
    second = threading.Event()

    def deliver():
        runs.append(time.monotonic())
        if len(runs) == 2:
            second.set()
        return clock.now() + timedelta(seconds=0.3) if len(runs) == 1 else None

    scheduler = Scheduler(lambda: None, tick_seconds=60, deliver=deliver)
    scheduler.start()
    try:
        assert second.wait(10), "the second pass waited for the 60 s interval"
    finally:
        scheduler.shutdown()
    assert 0.25 <= runs[1] - runs[0] < 5


def test_kicks_closer_together_than_their_delay_never_hold_a_pass_back():
    """One kick a commit: at 300 commits a second, each kick used to set the next run 10 ms on, past
    the one before, so no pass ever started while signals kept coming."""
    runs: list[float] = []
    scheduler = Scheduler(lambda: None, tick_seconds=60, deliver=lambda: runs.append(time.monotonic()))
    scheduler.start()
    try:
        deadline = time.monotonic() + 10  # a busy machine's worst case; a pass normally starts in ms
        while len(runs) < 3 and time.monotonic() < deadline:
            scheduler.kick()
            time.sleep(0.003)
    finally:
        scheduler.shutdown()
    assert len(runs) >= 3, f"{len(runs)} passes in 10 s of kicks"


def test_a_pass_kicked_while_it_ran_runs_once_more_at_once():
    """The pass may have looked for work before the commit that kicked it: it runs again right away,
    not at the next interval."""
    runs: list[float] = []
    kicked_during_first = threading.Event()
    second = threading.Event()
    scheduler = Scheduler(lambda: None, tick_seconds=60, deliver=lambda: deliver())

    def deliver():
        runs.append(time.monotonic())
        if len(runs) == 1:
            scheduler.kick()  # a commit lands while this pass runs
            kicked_during_first.set()
        elif len(runs) == 2:
            second.set()

    scheduler.start()
    try:
        assert second.wait(10), "the kicked pass waited for the 60 s interval"
    finally:
        scheduler.shutdown()
    assert kicked_during_first.is_set()
