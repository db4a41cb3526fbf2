"""Long-polls woken by the commit: a GET ?wait=N returns the moment a change to its escalation commits
in this process, instead of polling the database. Changes committed by another replica are seen by a
slow fallback poll (FALLBACK_POLL_S)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable

FALLBACK_POLL_S = 5.0


class Watch:
    """One long-poll's subscription. It exists before the first read, so a commit landing between
    that read and the wait still wakes it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    async def changed(self, timeout: float) -> None:
        """Until a change commits (or timeout); each change wakes one wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


class Wakeups:
    def __init__(self) -> None:
        self._watching: dict[str, set[Watch]] = {}
        self._lock = threading.Lock()

    def notify(self, escalation_ids: Iterable[str]) -> None:
        """Called after a commit, from whatever thread committed."""
        with self._lock:
            woken = [w for esc_id in escalation_ids for w in self._watching.get(esc_id, ())]
        for watch in woken:
            watch.loop.call_soon_threadsafe(watch.event.set)

    @contextlib.asynccontextmanager
    async def watch(self, esc_id: str) -> AsyncIterator[Watch]:
        watch = Watch()
        with self._lock:
            self._watching.setdefault(esc_id, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                left = self._watching.get(esc_id)
                if left is not None:
                    left.discard(watch)
                    if not left:
                        del self._watching[esc_id]
