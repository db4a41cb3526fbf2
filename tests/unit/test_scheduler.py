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
