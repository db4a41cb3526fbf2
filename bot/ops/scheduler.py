"""APScheduler jobs. Every replica runs the same tick; the database decides who does what."""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime, time, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.ops import clock

log = logging.getLogger("aopbot.scheduler")

TICK_JOB = "tick"
DELIVER_JOB = "deliver"
CALLBACK_JOB = "callbacks"
KICK_DELAY_S = 0.010
# What a commit can have queued: Slack deliveries and agent callbacks. The timers (the tick) are not
# kicked: nothing committed is due on them at once, and at one pass per signal they cost more than
# the signal itself. SLACK_LANE: a commit that queued only Slack work (a signal, a sampled record).
KICKED = (DELIVER_JOB, CALLBACK_JOB)
SLACK_LANE = (DELIVER_JOB,)


def _logged(fn):
    def run():
        try:
            fn()
        except Exception:
            log.exception("%s failed", getattr(fn, "__name__", "job"))
    return run


class Scheduler:
    def __init__(self, tick, tick_seconds: float, heartbeat=None, heartbeat_seconds: float = 1.0,
                 digest=None, digest_time: str = "09:00", digest_timezone: str = "UTC", deliver=None,
                 deliver_callbacks=None):
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(5)}, timezone="UTC")
        self._kicked: set[str] = set()  # jobs kicked since their last run started
        self._running: set[str] = set()  # jobs in a run that will look at _kicked before it ends
        self._kick_lock = threading.Lock()
        self._editing = threading.Lock()  # job edits (kicks, next runs) against shutdown: see shutdown()
        self._stopping = False
        if deliver is not None:  # its own job: timers (the tick) never wait behind a delivery backlog
            self._scheduler.add_job(self._starting(DELIVER_JOB, self._until_due(DELIVER_JOB, deliver)), "interval",
                                    seconds=tick_seconds,
                                    id=DELIVER_JOB, max_instances=1,
                                    coalesce=True, misfire_grace_time=None, next_run_time=clock.now())
        if deliver_callbacks is not None:  # a lane of its own: a slow receiver never holds a page
            self._scheduler.add_job(self._starting(CALLBACK_JOB, self._until_due(CALLBACK_JOB, deliver_callbacks)),
                                    "interval",
                                    seconds=tick_seconds, id=CALLBACK_JOB,
                                    max_instances=1, coalesce=True, misfire_grace_time=None,
                                    next_run_time=clock.now())
        if heartbeat is not None:  # its own job, so a slow tick never looks like a dead replica
            self._scheduler.add_job(_logged(heartbeat), "interval", seconds=heartbeat_seconds, id="heartbeat",
                                    max_instances=1, coalesce=True, next_run_time=clock.now())
        if digest is not None:  # on the minute; the tick also catches up after a restart or a missed run
            at = time.fromisoformat(digest_time)
            trigger = CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=digest_timezone)
            self._scheduler.add_job(_logged(digest), trigger, id="digest", max_instances=1, coalesce=True,
                                    misfire_grace_time=3600)
        # The timers run again at their interval, not at once: they have no backlog to chase.
        self._scheduler.add_job(self._starting(TICK_JOB, tick, again=False), "interval", seconds=tick_seconds,
                                id=TICK_JOB,
                                max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=clock.now())

    def start(self) -> None:
        self._scheduler.start()

    def _until_due(self, job_id: str, deliver):
        """A delivery pass returns when its lane's next waiting row is due (a Retry-After, a backoff):
        the next pass runs then, if that comes before the interval's. (Waiting for the interval made
        each 1 s Retry-After cost up to 2 s: a throttled channel got half the messages Slack allows.)"""
        @functools.wraps(deliver)
        def run() -> None:
            due = deliver()
            if isinstance(due, datetime):
                # Not sooner than 20 ms: this pass must have ended by then, or that run is skipped.
                self._bring_forward(job_id, max(due, clock.now() + timedelta(milliseconds=20)))
        return run

    def _starting(self, job_id: str, fn, again: bool = True):
        """A kick that lands while the job runs has its run skipped (one instance at a time), and the
        pass may have looked for work before that commit: with `again`, run once more at once (in
        this run: a run scheduled for later could still meet this instance and be skipped)."""
        @functools.wraps(fn)
        def run() -> None:
            while True:
                with self._kick_lock:
                    self._kicked.discard(job_id)
                    if again:
                        self._running.add(job_id)
                try:
                    fn()
                finally:
                    with self._kick_lock:
                        done = not again or self._stopping or job_id not in self._kicked
                        if done:
                            self._running.discard(job_id)
                if done:
                    return
        return run

    def kick(self, jobs: tuple[str, ...] = KICKED) -> None:
        """Run these delivery lanes now (new work was committed), instead of at the next interval."""
        if not self._scheduler.running:
            return
        with self._kick_lock:
            self._kicked.update(jobs)
            # A running pass sees the kick as it ends and goes again: editing its job (each kick, at
            # hundreds of signals a second) would only schedule runs that are skipped.
            idle = [job_id for job_id in jobs if job_id not in self._running]
        for job_id in idle:
            self._bring_forward(job_id, clock.now() + timedelta(seconds=KICK_DELAY_S))

    def _bring_forward(self, job_id: str, at: datetime) -> None:
        """Run the job at `at` if that is sooner than planned; never later (kicks less than their delay
        apart would otherwise keep pushing the run into the future)."""
        with self._editing:
            job = None if self._stopping else self._scheduler.get_job(job_id)
            if job is not None and (job.next_run_time is None or job.next_run_time > at):
                job.modify(next_run_time=at)

    def shutdown(self) -> None:
        """Wait for the running jobs. APScheduler holds its job-store lock while it waits, so a job
        editing its next run then (get_job) would wait forever: no edits once stopping."""
        with self._editing:
            self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
