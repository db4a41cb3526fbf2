"""The agent change log: append (hash-chained per process), read, verify, export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.models import ChangelogEntry, ChangelogHead
from bot.ops import clock
from bot.ops.db import upsert_insert

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def _insert_head_if_missing(session: Session, process_id: str) -> None:
    stmt = upsert_insert(session, ChangelogHead).values(process_id=process_id, seq=0, hash=GENESIS)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["process_id"]))


def append(session: Session, entry: dict[str, Any], escalation_id: str | None = None) -> dict[str, Any]:
    """Append one entry to its process's chain, inside the caller's transaction.

    The head row is locked (FOR UPDATE) so concurrent appends to one process queue up instead of
    forking the chain; appends to different processes do not wait on each other.
    """
    process_id = entry["process_id"]
    _insert_head_if_missing(session, process_id)
    head = session.execute(
        select(ChangelogHead).where(ChangelogHead.process_id == process_id).with_for_update()
    ).scalar_one()
    full = dict(entry)
    full["seq"] = head.seq + 1
    full["prev_hash"] = head.hash
    body = canonical(full)
    digest = chain_hash(head.hash, body)
    ts = datetime.fromisoformat(full["timestamp"].replace("Z", "+00:00"))
    session.add(
        ChangelogEntry(
            process_id=process_id,
            seq=full["seq"],
            timestamp=ts,
            escalation_id=escalation_id,
            human_escalation=bool(full["human_escalation"]),
            decision=str(full["decision"])[:200],
            body=body,
            hash=digest,
        )
    )
    head.seq = full["seq"]
    head.hash = digest
    full["hash"] = digest
    return full


def row_to_entry(row: ChangelogEntry) -> dict[str, Any]:
    entry = json.loads(row.body)
    entry["hash"] = row.hash
    return entry


def read(
    session: Session,
    process_ids: list[str],
    since: datetime | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    """Entries of these processes, oldest first."""
    q = select(ChangelogEntry).where(ChangelogEntry.process_id.in_(process_ids))
    if since is not None:
        q = q.where(ChangelogEntry.timestamp >= since)
    if after_id is not None:
        q = q.where(ChangelogEntry.id > after_id)
    q = q.order_by(ChangelogEntry.timestamp, ChangelogEntry.id).limit(limit)
    return [row_to_entry(r) for r in session.scalars(q)]


def iter_all(session: Session, process_id: str | None = None, since: datetime | None = None,
             batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry (optionally of one process, from a time), oldest first, in batches."""
    last_id = 0
    while True:
        q = select(ChangelogEntry).where(ChangelogEntry.id > last_id)
        if process_id:
            q = q.where(ChangelogEntry.process_id == process_id)
        if since is not None:
            q = q.where(ChangelogEntry.timestamp >= since)
        rows = list(session.scalars(q.order_by(ChangelogEntry.id).limit(batch)))
        if not rows:
            return
        for r in rows:
            yield row_to_entry(r)
        last_id = rows[-1].id


@dataclass
class VerifyProblem:
    process_id: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"{self.process_id} seq {self.seq}: {self.problem}"


def verify(session: Session, process_id: str | None = None) -> tuple[int, list[VerifyProblem]]:
    """Walk each chain; report the first broken entry of each process (edit, delete, reorder, insert)."""
    heads = {h.process_id: h for h in session.scalars(select(ChangelogHead))}
    pids = [process_id] if process_id else sorted(
        set(heads) | set(session.scalars(select(ChangelogEntry.process_id).distinct()))
    )
    checked = 0
    problems: list[VerifyProblem] = []
    for pid in pids:
        prev_hash, expected_seq = GENESIS, 1
        broken = None
        q = select(ChangelogEntry).where(ChangelogEntry.process_id == pid).order_by(ChangelogEntry.seq)
        for row in session.scalars(q).yield_per(1000):
            checked += 1
            if broken:
                continue
            try:
                body = json.loads(row.body)
            except ValueError:
                broken = VerifyProblem(pid, row.seq, "entry is not valid JSON (edited)")
                continue
            if row.seq != expected_seq:
                what = "missing (deleted)" if row.seq > expected_seq else "out of order or inserted"
                broken = VerifyProblem(pid, expected_seq, f"entry {what}; found seq {row.seq} next")
            elif body.get("seq") != row.seq or body.get("process_id") != pid:
                broken = VerifyProblem(pid, row.seq, "seq or process_id does not match its position (moved)")
            elif body.get("prev_hash") != prev_hash:
                broken = VerifyProblem(pid, row.seq, "prev_hash does not match the entry before (reordered)")
            elif chain_hash(prev_hash, row.body) != row.hash:
                broken = VerifyProblem(pid, row.seq, "hash does not match its content (edited)")
            prev_hash, expected_seq = row.hash, row.seq + 1
        head = heads.get(pid)
        last = expected_seq - 1
        if not broken and head is not None and last > head.seq:
            broken = VerifyProblem(pid, head.seq + 1, f"entry beyond the chain head (seq {head.seq}): inserted")
        elif not broken and head is not None and (last < head.seq or head.hash != prev_hash):
            broken = VerifyProblem(pid, expected_seq, f"chain ends at seq {last} but its head says {head.seq} "
                                   "(entries deleted from the end)")
        if broken:
            problems.append(broken)
    return checked, problems


def now_stamp() -> str:
    return clock.iso(clock.now())


def latest(session: Session, process_id: str, n: int) -> list[dict[str, Any]]:
    """The last n entries of one process, newest first."""
    q = select(ChangelogEntry).where(ChangelogEntry.process_id == process_id).order_by(
        ChangelogEntry.seq.desc()).limit(n)
    return [row_to_entry(r) for r in session.scalars(q)]
