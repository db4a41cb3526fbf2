"""Delivery in a process of its own (PostgreSQL): `aopbot serve` keeps the HTTP API and Slack's
requests, and starts one child that runs the scheduler (timers, both outbox lanes, the digest).

Why: paging a signal costs about as much CPU as taking it in (three Slack calls and their
bookkeeping). In one process the two share the GIL, and under a burst of signals delivery took the
API's time: the second core goes to delivery instead (docs/BENCHMARKS.md has the figures).

The parent tells the child about new work through a pipe (one byte a kick, naming the lanes with
new work; dropped when the pipe is full: kicks are already waiting). The child ends when the pipe
closes (the parent stopping hands over its in-flight work gracefully) and, on Linux, is killed with
the parent (a SIGKILLed serve takes its delivery with it, as a killed container would). A child
that dies is started again. Other replicas need no kick: the outbox is claimed with leases, so each
row goes out once anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading

from bot.ops.config import Settings
from bot.ops.scheduler import KICKED, SLACK_LANE

log = logging.getLogger("aopbot.worker")

RESTART_AFTER_S = 1.0
STOP_WAIT_S = 30.0
SLACK_ONLY, BOTH_LANES = b"s", b"a"  # a kick's byte: which delivery lanes have new work


def wanted(settings: Settings, is_postgres: bool, sandbox: bool) -> bool:
    """AOP_DELIVERY_PROCESS: unset = on with PostgreSQL (SQLite serialises writers anyway, and the
    sandbox's Slack lives in the serving process); 1 = on; 0 = off."""
    if settings.aop_delivery_process is not None:
        return settings.aop_delivery_process and not sandbox
    return is_postgres and not sandbox


class DeliveryWorker:
    """The parent's handle on the delivery child: start, kick, restart when it dies, stop."""

    def __init__(self) -> None:
        self.ready = threading.Event()  # the first child has started its scheduler (GET /readyz)
        self._proc: subprocess.Popen | None = None
        self._kick_fd: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> DeliveryWorker:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="aop-worker-watch", daemon=True)
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()  # kicks, to the child
        ready_read, ready_write = os.pipe()  # one byte once its scheduler runs, from the child
        os.set_blocking(write_fd, False)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no outside input
                [sys.executable, "-m", "bot", "serve", "--delivery-worker", f"{read_fd},{ready_write}"],
                pass_fds=(read_fd, ready_write))
        except Exception:
            os.close(write_fd)
            os.close(ready_read)
            raise
        finally:
            os.close(read_fd)
            os.close(ready_write)
        threading.Thread(target=self._await_ready, args=(ready_read,), name="aop-worker-ready", daemon=True).start()
        with self._lock:
            self._proc, self._kick_fd = proc, write_fd
            if self._stopping.is_set():  # stop() ran while this one started: it ends with the pipe
                os.close(write_fd)
                self._kick_fd = None
        log.info("delivery worker started (pid %d)", proc.pid)

    def _await_ready(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            if os.read(fd, 1):
                self.ready.set()
        os.close(fd)

    def _watch(self) -> None:
        """Start the child again if it dies while we serve (its leases lapse; the new one resumes)."""
        while not self._stopping.is_set():
            proc = self._proc
            code = proc.wait() if proc is not None else None
            if self._stopping.is_set():
                return
            log.error("delivery worker exited with %s; starting it again", code)
            with self._lock:
                if self._kick_fd is not None:
                    os.close(self._kick_fd)
                    self._kick_fd = None
            if self._stopping.wait(RESTART_AFTER_S):
                return
            try:
                self._spawn()
            except Exception:
                log.exception("could not start the delivery worker; trying again")

    def kick(self, jobs: tuple[str, ...] = KICKED) -> None:
        """New work committed: the child's next pass of these lanes runs now (never blocks)."""
        with self._lock:
            fd = self._kick_fd
            if fd is None:
                return
            # Full: kicks are pending already (a lost "both lanes" still has the callbacks' interval).
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(fd, SLACK_ONLY if tuple(jobs) == SLACK_LANE else BOTH_LANES)

    def stop(self) -> None:
        """Close the pipe (the child finishes what it is delivering and exits), then wait for it."""
        self._stopping.set()
        with self._lock:
            fd, self._kick_fd = self._kick_fd, None
        if fd is not None:
            os.close(fd)
        if self._watcher is not None:  # a restart under way finishes first (and sees it must not run)
            self._watcher.join(STOP_WAIT_S)
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error("delivery worker did not stop in %.0f s; killing it", STOP_WAIT_S)
            proc.kill()
            proc.wait(5)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies, however it dies."""
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _parent_gone(kick_fd: int) -> bool:
    """The pipe's far end is closed (reading it now would say end-of-file)."""
    readable, _, _ = select.select([kick_fd], [], [], 0)
    if not readable:
        return False
    os.set_blocking(kick_fd, False)
    try:
        while os.read(kick_fd, 4096):  # kicks sent before we listened: the first pass sees their rows
            pass
        return True
    except BlockingIOError:
        return False
    finally:
        os.set_blocking(kick_fd, True)


def run(settings: Settings, fds: str) -> int:
    """The child: the scheduler of `aopbot serve`, kicked through the first pipe until it closes; a
    byte on the second says the scheduler runs."""
    from bot.domain.registry import Registry, latest_snapshot
    from bot.ops.app import build_services
    from bot.ops.db import Database

    kick_fd, ready_fd = (int(fd) for fd in fds.split(","))
    _die_with_parent()
    if _parent_gone(kick_fd):  # it died before the line above took effect
        return 0
    db = Database(settings.database_url)
    with db.transaction() as s:  # the registry the parent validated and recorded: not the file again
        latest = latest_snapshot(s)
    services = build_services(settings, db, registry=Registry(latest[1], latest[0]) if latest else None)
    done = threading.Event()
    # A Ctrl-C or a stop sent to the whole group reaches us too: the parent stops us when its requests
    # are done (it closes the pipe), so we ignore them rather than look like a crash it restarts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def listen() -> None:
        while True:
            try:
                kicks = os.read(kick_fd, 4096)
            except OSError:
                kicks = b""
            if not kicks:  # the parent closed the pipe (stopping) or died
                done.set()
                return
            scheduler.kick(KICKED if BOTH_LANES in kicks else SLACK_LANE)

    scheduler = services.run_scheduler()
    threading.Thread(target=listen, name="aop-kicks", daemon=True).start()
    with contextlib.suppress(OSError):
        os.write(ready_fd, b"!")
        os.close(ready_fd)
    log.info("delivery worker ready (pid %d)", os.getpid())
    while not done.wait(1.0):
        pass
    scheduler.shutdown()
    db.dispose()
    return 0
