"""Long-polls woken by the commit: a GET ?wait=N returns the moment a change to its escalation commits
in this process, instead of polling the database. Changes committed by another replica are seen by a
slow fallback poll (FALLBACK_POLL_S)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

FALLBACK_POLL_S = 5.0


class Wakeups:
    def __init__(self) -> None:
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def notify(self, escalation_ids: Iterable[str]) -> None:
        """Called after a commit, from whatever thread committed."""
        with self._lock:
            woken = [w for esc_id in escalation_ids for w in self._waiting.get(esc_id, ())]
        for loop, event in woken:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, esc_id: str, timeout: float) -> None:
        """Until a change to esc_id commits here, or timeout seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(esc_id, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                left = self._waiting.get(esc_id)
                if left is not None:
                    left.discard(waiter)
                    if not left:
                        del self._waiting[esc_id]
