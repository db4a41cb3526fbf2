"""The outbox: work written in the same transaction as the state change, delivered after commit.

Any replica may deliver. A row is claimed with a lease (locked_until) in a short transaction, the
Slack or HTTP call happens outside any transaction, and the result is written in another. Rows with
the same ordering_key (a Slack channel) are delivered strictly in id order: a row waits while an
earlier row of its key is still pending, so a rate-limited channel keeps its order. A batch with
room to spare also takes the rows right behind a head it claimed (a chain, delivered one after the
other by one thread): a backlog on one channel costs a claim per batch, not per row.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from bot.domain.models import OutboxItem, Worker
from bot.ops import clock
from bot.ops.db import Database, upsert_insert

log = logging.getLogger("aopbot.outbox")

LEASE = timedelta(minutes=5)  # a backstop; a live worker's claim normally ends when its heartbeat stops
HEARTBEAT_S = 1.0
DELIVERY_THREADS = 4  # Slack calls wait on the network, so a few at once keep a replica busy
DEAD_AFTER = timedelta(seconds=10)  # generous: a busy replica must not look dead
MAX_BACKOFF_S = 30  # Slack blips cost seconds: 1, 2, 4 … 30 s between tries


class RetryLater(Exception):
    """Delivery cannot happen yet (dependency not ready, transient failure); try again later."""

    def __init__(self, message: str, delay_s: float | None = None):
        super().__init__(message)
        self.delay_s = delay_s


class PermanentFailure(Exception):
    """Delivery can never succeed as asked (channel gone, user gone); stop retrying."""


# A handler may return a hook that runs in the transaction marking its row done (what it sent, written
# down with the row's completion in one commit; also when the row is no longer ours).
Handler = Callable[[OutboxItem], Callable[[Session], None] | None]
# Runs in the transaction that marks a row failed for good, so a fallback is queued with it or not at all.
FailureHook = Callable[[Session, OutboxItem, str], None]


def enqueue(session: Session, kind: str, ordering_key: str, payload: dict[str, Any] | None = None,
            escalation_id: str | None = None, delay_s: float = 0, trace_id: str | None = None) -> OutboxItem:
    """Queue work for after commit. trace_id rides along so every log line about it carries the trace."""
    item = OutboxItem(**new_row(kind, ordering_key, payload, escalation_id, delay_s, trace_id))
    session.add(item)
    return item


def new_row(kind: str, ordering_key: str, payload: dict[str, Any] | None = None,
            escalation_id: str | None = None, delay_s: float = 0, trace_id: str | None = None
            ) -> dict[str, Any]:
    """The column values of a new outbox row (enqueue adds them as an object; a Core INSERT takes them)."""
    now = clock.now()
    if trace_id:
        payload = {**(payload or {}), "trace_id": trace_id}
    return {"kind": kind, "ordering_key": ordering_key, "escalation_id": escalation_id, "payload": payload or {},
            "status": "pending", "attempts": 0, "next_attempt_at": now + timedelta(seconds=delay_s),
            "created_at": now}


def _lost(item: OutboxItem) -> str:
    log.warning("outbox %s %s: our lease ran out while we delivered it; another worker may have it",
                item.kind, item.id, extra=_log_ids(item))
    return "lost"


def _log_ids(item: OutboxItem) -> dict[str, Any]:
    return {"escalation_id": item.escalation_id, "trace_id": (item.payload or {}).get("trace_id")}


def backoff_seconds(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


class Outbox:
    def __init__(self, db: Database, handlers: dict[str, Handler] | None = None, worker_id: str | None = None,
                 kinds: frozenset[str] | None = None, exclude: frozenset[str] = frozenset()):
        """kinds/exclude make a lane: this outbox claims only those kinds (or all but the excluded), so
        one lane's slow deliveries never hold another's."""
        self.db = db
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.failure_hooks: dict[str, FailureHook] = {}
        self.give_up_after: dict[str, timedelta] = {}
        self.kinds, self.exclude = kinds, exclude
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._lock = threading.Lock()  # one delivery pass at a time in this process
        self._pool = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="aop-deliver")

    def register(self, kind: str, handler: Handler, on_failure: FailureHook | None = None,
                 give_up_after: timedelta | None = None) -> None:
        """give_up_after: a row still failing that long after it was queued is dead-lettered (failed)."""
        self.handlers[kind] = handler
        if give_up_after is not None:
            self.give_up_after[kind] = give_up_after
        if on_failure is not None:
            self.failure_hooks[kind] = on_failure

    def claim(self, limit: int = 20) -> list[OutboxItem]:
        """Lease up to `limit` deliverable rows: the oldest pending row of each ordering key, when due
        and not leased by a live worker; then, if fewer keys than `limit` had one, the rows right
        behind those heads (see _followers), in id order.

        The heads in one statement, cheap at any queue length: the head of every key (a grouped
        index scan, in a CTE: a list of ids sent back as bind parameters broke past ~65,000 keys),
        then a lock on the due heads. (One query asking "is there an earlier pending row of my
        key?" for every pending row cost time in the square of the backlog.) Then one indexed query
        per head for its followers, and one UPDATE that leases them all."""
        now = clock.now()
        with self.db.transaction() as s:
            self._beat(s, now)  # our leases belong to a known, live worker from the first claim on
            q = (
                self._heads_to_claim(select(OutboxItem.id, OutboxItem.ordering_key, OutboxItem.last_error), now)
                .where(OutboxItem.next_attempt_at <= now)
                .order_by(OutboxItem.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                q = q.with_for_update(skip_locked=True, of=OutboxItem)
            heads = s.execute(q).all()
            if not heads:
                return []
            per_head = (limit - len(heads)) // len(heads)
            chains = self._followers(s, heads, per_head, now) if per_head else []
            ids = [head.id for head in heads] + [row_id for chain in chains for row_id in chain]
            leased = set(s.scalars(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids), OutboxItem.status == "pending")
                .values(locked_until=now + LEASE, locked_by=self.worker_id, attempts=OutboxItem.attempts + 1)
                .returning(OutboxItem.id)))
            # A follower has no lock of its own: one dropped by an operator, or finished by a worker
            # whose lease had run out, since it was read is not leased, and its chain ends before it.
            beyond = [row_id for chain in chains for row_id in _after_first_missing(chain, leased)]
            if beyond:
                self._release_ids(s, beyond)
                leased -= set(beyond)
            items = list(s.scalars(select(OutboxItem).where(OutboxItem.id.in_(leased)).order_by(OutboxItem.id)))
            for it in items:
                s.expunge(it)
            return items

    def _followers(self, s: Session, heads: list, per_head: int, now: datetime) -> list[list[int]]:
        """Up to per_head rows right behind each head (a list per head), in order, while each is due and
        not leased: they go out after their head in the same batch (one thread a key, so the order
        holds). No other worker claims them meanwhile: a key's rows are only claimed through its head,
        which this transaction holds (FOR UPDATE), and afterwards through the lease on it. Not behind
        a head that was tried before (last_error): a channel refusing or throttling posts would refuse
        them too."""
        chains: list[list[int]] = []
        for head in heads:
            if head.last_error is not None:
                continue
            rows = s.execute(
                select(OutboxItem.id, OutboxItem.next_attempt_at, OutboxItem.locked_until, OutboxItem.locked_by)
                .where(OutboxItem.ordering_key == head.ordering_key, OutboxItem.status == "pending",
                       OutboxItem.id > head.id, *self._lane())
                .order_by(OutboxItem.id).limit(per_head))
            chain: list[int] = []
            for row in rows:
                leased = row.locked_by not in (None, self.worker_id) and _aware(row.locked_until) >= now
                if leased or _aware(row.next_attempt_at) > now:
                    break  # the chain stops at the first row that cannot go now: never out of order
                chain.append(row.id)
            chains.append(chain)
        return chains

    def _release(self, items: list[OutboxItem]) -> None:
        """Give back rows claimed but not tried (their head must be retried first): unleased, and
        the attempt the claim counted taken back."""
        with self.db.transaction() as s:
            self._release_ids(s, [it.id for it in items])

    def _release_ids(self, s: Session, ids: list[int]) -> None:
        s.execute(update(OutboxItem)
                  .where(OutboxItem.id.in_(ids), OutboxItem.locked_by == self.worker_id)
                  .values(locked_until=None, locked_by=None, attempts=OutboxItem.attempts - 1))

    def _heads_to_claim(self, query: Select, now: datetime) -> Select:
        """query narrowed to the oldest pending row of each ordering key in this lane, unless a live
        worker holds it.

        The heads are worked out once, as a materialized CTE, then joined. As `id IN (subquery)`,
        PostgreSQL's estimate for a queue that had just grown (statistics from when it was nearly
        empty) chose a nested loop re-reading the grouped heads for every pending row: 72 ms a claim
        at 3,000 pending rows, and most of PostgreSQL's CPU during a burst of signals."""
        live_workers = select(Worker.id).where(Worker.heartbeat_at > now - DEAD_AFTER)
        inner = aliased(OutboxItem)
        heads = (select(func.min(inner.id).label("id")).where(inner.status == "pending", *self._lane(inner))
                 .group_by(inner.ordering_key).cte("heads"))
        if self.db.is_postgres:
            heads = heads.prefix_with("MATERIALIZED")
        return query.join(heads, heads.c.id == OutboxItem.id).where(
            OutboxItem.status == "pending",
            or_(
                OutboxItem.locked_until.is_(None),
                OutboxItem.locked_until < now,
                OutboxItem.locked_by == self.worker_id,  # ours from a pass that died mid-way
                OutboxItem.locked_by.not_in(live_workers),  # a crashed replica's
            ),
        )

    def next_due(self) -> datetime | None:
        """When the soonest row this lane could claim is due (a Retry-After or a backoff ends), or None.
        The scheduler runs the next pass then rather than at its next interval: a 1 s Retry-After
        that ended just after a pass otherwise waited up to a second more."""
        now = clock.now()
        with self.db.transaction() as s:
            due = s.scalar(self._heads_to_claim(select(func.min(OutboxItem.next_attempt_at)), now))
        return _aware(due) if due is not None else None

    def _lane(self, table=OutboxItem) -> list:
        where = []
        if self.kinds is not None:
            where.append(table.kind.in_(sorted(self.kinds)))
        if self.exclude:
            where.append(table.kind.not_in(sorted(self.exclude)))
        return where

    def heartbeat(self) -> None:
        """Say this worker is alive (every HEARTBEAT_S, from its own scheduler thread) and keep the
        leases of what it is delivering, so a long delivery is never taken over while it runs."""
        now = clock.now()
        with self.db.transaction() as s:
            self._beat(s, now)
            s.execute(update(OutboxItem).where(OutboxItem.locked_by == self.worker_id,
                                               OutboxItem.status == "pending").values(locked_until=now + LEASE))
            s.execute(delete(Worker).where(Worker.heartbeat_at < now - timedelta(days=1)))

    def _beat(self, s: Session, now) -> None:
        """Upsert this worker's heartbeat (the heartbeat job and a claim may race to create it)."""
        stmt = upsert_insert(s, Worker).values(id=self.worker_id, started_at=now, heartbeat_at=now)
        s.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now}))

    def _finish(self, item: OutboxItem, hook: Callable[[Session], None] | None = None,
                record: Callable[[Session], None] | None = None, **values: Any) -> bool:
        """Write the outcome if the row is still ours (False: our lease was lost and another worker may
        have the row). hook runs only then; record (what the delivery sent) runs either way, so the
        worker holding the row now finds it."""
        with self.db.transaction() as s:
            result = s.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id, OutboxItem.locked_by == self.worker_id)
                .values(locked_until=None, locked_by=None, **values)
            )
            if record is not None:
                record(s)
            if hook is not None and result.rowcount == 1:
                hook(s)
            return result.rowcount == 1

    def deliver(self, item: OutboxItem) -> str:
        handler = self.handlers.get(item.kind)
        try:
            if handler is None:
                raise PermanentFailure(f"no handler for outbox kind {item.kind!r}")
            written_down = handler(item)
        except RetryLater as e:
            limit = self.give_up_after.get(item.kind)
            if limit is not None and clock.now() - _aware(item.created_at) >= limit:
                return self._fail(item, f"gave up after {limit}: {e}")
            delay = e.delay_s if e.delay_s is not None else backoff_seconds(item.attempts)
            # A wait we were told (Retry-After, a page not posted yet) is not a failure: it must not
            # grow the backoff of a later 5xx (seven 429s then one 500 once meant a 128 s wait).
            uncount = {"attempts": OutboxItem.attempts - 1} if e.delay_s is not None else {}
            self._finish(item, next_attempt_at=clock.now() + timedelta(seconds=delay), last_error=str(e)[:2000],
                         **uncount)
            log.info("outbox %s %s retry in %.0fs: %s", item.kind, item.id, delay, e,
                     extra=_log_ids(item))
            return "retry"
        except PermanentFailure as e:
            return self._fail(item, str(e))
        except Exception as e:  # a bug or an unexpected error: keep the row, back off, say so loudly
            limit = self.give_up_after.get(item.kind)
            if limit is not None and clock.now() - _aware(item.created_at) >= limit:
                return self._fail(item, f"gave up after {limit}: {type(e).__name__}: {e}")
            delay = backoff_seconds(item.attempts)
            self._finish(item, next_attempt_at=clock.now() + timedelta(seconds=delay),
                         last_error=f"{type(e).__name__}: {e}"[:2000])
            log.exception("outbox %s %s error; retry in %.0fs", item.kind, item.id, delay,
                          extra=_log_ids(item))
            return "retry"
        if not self._finish(item, record=written_down if callable(written_down) else None,
                            status="done", done_at=clock.now(), last_error=None):
            return _lost(item)
        return "done"

    def _fail(self, item: OutboxItem, reason: str) -> str:
        """Failed for good (dead-lettered): kept with its error for /metrics, the digest, `aopbot outbox`."""
        on_failure = self.failure_hooks.get(item.kind)
        hook = (lambda s: on_failure(s, item, reason)) if on_failure else None
        if not self._finish(item, hook, status="failed", done_at=clock.now(), last_error=reason[:2000]):
            return _lost(item)
        log.error("outbox %s %s failed for good: %s", item.kind, item.id, reason, extra=_log_ids(item))
        return "failed"

    def run_once(self, limit: int = 20) -> int:
        """Claim and deliver one batch; the number of rows handled. Each ordering key's rows in the
        batch (its head, and the chain behind it) go out in order on one thread; keys side by side."""
        with self._lock:
            items = self.claim(limit)
            chains: dict[str, list[OutboxItem]] = {}
            for it in items:  # claim() returns them in id order
                chains.setdefault(it.ordering_key, []).append(it)
            if len(chains) <= 1:
                for chain in chains.values():
                    self._deliver_chain(chain)
            else:  # wait for every key, even if one fails, so no row of this pass is still in flight
                wait([self._pool.submit(self._deliver_chain, chain) for chain in chains.values()])
            return len(items)

    def _deliver_chain(self, chain: list[OutboxItem]) -> None:
        for i, item in enumerate(chain):
            if self.deliver(item) in ("retry", "lost") and i + 1 < len(chain):
                # They wait for this one: strictly in order. (Lost: whoever holds it now goes on.)
                self._release(chain[i + 1:])
                return

    def drain(self, max_batches: int = 1000) -> int:
        """Deliver until nothing is due now (tests and the CLI use this)."""
        total = 0
        for _ in range(max_batches):
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def backlog(self) -> tuple[int, float]:
        """Pending rows and the age in seconds of the oldest one."""
        with self.db.transaction() as s:
            count, oldest = s.execute(
                select(func.count(), func.min(OutboxItem.created_at)).where(OutboxItem.status == "pending")
            ).one()
        age = 0.0
        if oldest is not None:
            age = (clock.now() - _aware(oldest)).total_seconds()
        return count, age


# -- the operator's view (aopbot outbox list|retry|drop) ---------------------------------------------


_OPEN = ("pending", "failed")  # what an operator may still retry or drop


def rows(db: Database, status: str | None = None, limit: int = 100) -> list[OutboxItem]:
    """Rows not delivered yet or failed for good (dead-lettered), oldest first."""
    with db.transaction() as s:
        q = select(OutboxItem).where(OutboxItem.status == status if status else OutboxItem.status.in_(_OPEN))
        found = list(s.scalars(q.order_by(OutboxItem.id).limit(limit)))
        for it in found:
            s.expunge(it)
        return found


def _not_in_flight(now: datetime):
    """A row no live worker is delivering right now: touching one that is would let a second worker
    claim it while the first still sends it (delivered twice)."""
    live = select(Worker.id).where(Worker.heartbeat_at > now - DEAD_AFTER)
    return or_(OutboxItem.locked_by.is_(None), OutboxItem.locked_until < now, OutboxItem.locked_by.not_in(live))


def retry(db: Database, ids: list[int]) -> int:
    """Send failed (or waiting) rows again now, from a fresh backoff and a fresh 24 h budget. A row a
    live worker is delivering at this moment is left alone (it is being tried already). attempts
    restarts at 1, not 0: the row was tried before, so a post it may have made is looked for first."""
    now = clock.now()
    with db.transaction() as s:
        result = s.execute(update(OutboxItem).where(OutboxItem.id.in_(ids), OutboxItem.status.in_(_OPEN),
                                                    _not_in_flight(now))
                           .values(status="pending", attempts=1, next_attempt_at=now, created_at=now, done_at=None,
                                   locked_by=None, locked_until=None))
        return result.rowcount


def drop(db: Database, ids: list[int]) -> int:
    """Give up on rows for good (kept, marked dropped, so what happened stays on record); not a row a
    live worker is delivering at this moment."""
    now = clock.now()
    with db.transaction() as s:
        result = s.execute(update(OutboxItem).where(OutboxItem.id.in_(ids), OutboxItem.status.in_(_OPEN),
                                                    _not_in_flight(now))
                           .values(status="dropped", done_at=now, locked_by=None, locked_until=None))
        return result.rowcount


def _after_first_missing(chain: list[int], present: set[int]) -> list[int]:
    """The ids of `chain` after the first one not in `present` (none if all are)."""
    for i, row_id in enumerate(chain):
        if row_id not in present:
            return [later for later in chain[i + 1:] if later in present]
    return []


def _aware(dt: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
