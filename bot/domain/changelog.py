"""The agent change log: append (hash-chained per process), read, verify, export."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.domain.models import ChangelogEntry, ChangelogHead
from bot.ops import clock
from bot.ops.db import upsert_insert

log = logging.getLogger("aopbot.changelog")

GENESIS = "0" * 64
HASH_VERSION = 2  # what append writes; verify also knows 1 (entries written before migration 0006)
HEADS_EVENT = "aopbot_changelog_heads"  # the Slack message metadata type the digest publishes heads in


def canonical(obj: Any) -> str:
    """Scheme 1's JSON (sorted keys, no spaces); also the action and request hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def as_doubles(obj: Any) -> Any:
    """Integers past ±(2^53-1) as the doubles every JSON reader takes them for. The API refuses them;
    this keeps data from before that rule (and a JCS number read back as a Python int) hashable."""
    if isinstance(obj, dict):
        return {k: as_doubles(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_doubles(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > 2**53 - 1:
        return float(obj)
    return obj


def jcs(obj: Any) -> str:
    """RFC 8785 canonical JSON: scheme 2's bodies and hash input."""
    return rfc8785.dumps(as_doubles(obj)).decode()


def chain_hash(prev_hash: str, body: str) -> str:
    """Scheme 1: the body text only."""
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


def _column_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(prev_hash: str, process_id: str, seq: int, timestamp: datetime, escalation_id: str | None,
             human_escalation: bool, decision: str, body: str) -> str:
    """Scheme 2: every stored column of the entry (all but its row id and the hash itself), so editing
    the timestamp, decision or escalation id of a row breaks it as surely as editing its body."""
    material = jcs({
        "v": 2, "prev_hash": prev_hash, "process_id": process_id, "seq": seq,
        "timestamp": _column_time(timestamp), "escalation_id": escalation_id,
        "human_escalation": human_escalation, "decision": decision, "body": body,
    })
    return hashlib.sha256(material.encode()).hexdigest()


def _columns_from(entry: dict[str, Any]) -> dict[str, Any]:
    """The columns an entry is stored with, all taken from the entry itself (so verify, and anyone
    holding an export, can rebuild them). escalation_id is the outcome's escalation: an agent's own
    record may mention an escalation without being its outcome."""
    return {
        "timestamp": datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).astimezone(UTC),
        "escalation_id": entry.get("escalation_id") if entry["human_escalation"] else None,
        "human_escalation": bool(entry["human_escalation"]),
        "decision": str(entry["decision"])[:200],
    }


def _last_entry(session: Session, process_id: str) -> ChangelogEntry | None:
    return session.scalars(select(ChangelogEntry).where(ChangelogEntry.process_id == process_id)
                           .order_by(ChangelogEntry.seq.desc()).limit(1)).first()


def _locked_head(session: Session, process_id: str) -> ChangelogHead:
    """The process's head row, locked (FOR UPDATE). A missing one starts the chain, or, when the chain
    already has entries (the row was deleted), is rebuilt from its last entry and said so."""
    head = session.execute(select(ChangelogHead).where(ChangelogHead.process_id == process_id)
                           .with_for_update()).scalar_one_or_none()
    if head is not None:
        return head
    last = _last_entry(session, process_id)
    seq, digest = (last.seq, last.hash) if last is not None else (0, GENESIS)
    stmt = upsert_insert(session, ChangelogHead).values(process_id=process_id, seq=seq, hash=digest)
    inserted = session.execute(stmt.on_conflict_do_nothing(index_elements=["process_id"])).rowcount
    if inserted and last is not None:
        log.warning("change-log head of %s was missing: rebuilt from its last entry (seq %d); "
                    "run `aopbot changelog verify --anchors` to check nothing before it went too",
                    process_id, seq, extra={"process_id": process_id})
    return session.execute(select(ChangelogHead).where(ChangelogHead.process_id == process_id)
                           .with_for_update()).scalar_one()


def append(session: Session, entry: dict[str, Any]) -> dict[str, Any]:
    """Append one entry to its process's chain, inside the caller's transaction.

    The head row is locked (FOR UPDATE) so concurrent appends to one process queue up instead of
    forking the chain; appends to different processes do not wait on each other.
    """
    process_id = entry["process_id"]
    head = _locked_head(session, process_id)
    full = dict(entry)
    full["seq"] = head.seq + 1
    full["prev_hash"] = head.hash
    body = jcs(full)
    columns = _columns_from(full)
    digest = row_hash(head.hash, process_id, full["seq"], body=body, **columns)
    session.add(ChangelogEntry(process_id=process_id, seq=full["seq"], body=body, hash=digest,
                               hash_version=HASH_VERSION, **columns))
    head.seq = full["seq"]
    head.hash = digest
    full["hash"] = digest
    full["hash_version"] = HASH_VERSION
    return full


def row_to_entry(row: ChangelogEntry) -> dict[str, Any]:
    entry = json.loads(row.body)
    entry["hash"] = row.hash
    entry["hash_version"] = row.hash_version
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


def _row_problem(row: ChangelogEntry, pid: str, prev_hash: str, expected_seq: int) -> str | None:
    """What is wrong with one row in its place in the chain, or None."""
    if row.seq != expected_seq:
        what = "missing (deleted)" if row.seq > expected_seq else "out of order or inserted"
        return f"entry {what}; found seq {row.seq} next"
    try:
        body = json.loads(row.body)
        columns = _columns_from(body)
    except (ValueError, KeyError, TypeError, AttributeError):
        return "entry is not a valid change-log entry (edited)"
    if body.get("seq") != row.seq or body.get("process_id") != pid:
        return "seq or process_id does not match its position (moved)"
    if body.get("prev_hash") != prev_hash:
        return "prev_hash does not match the entry before (reordered)"
    stored = {"timestamp": row.timestamp, "escalation_id": row.escalation_id,
              "human_escalation": row.human_escalation, "decision": row.decision}
    for name, value in stored.items():
        if value != columns[name]:
            return f"{name} differs from the entry's own (edited)"
    if row.hash_version == 1:
        expected = chain_hash(prev_hash, row.body)
    elif row.hash_version == 2:
        expected = row_hash(prev_hash, pid, row.seq, row.timestamp, row.escalation_id, row.human_escalation,
                            row.decision, row.body)
    else:
        return f"unknown hash scheme {row.hash_version} (edited)"
    if expected != row.hash:
        return "hash does not match its content (edited)"
    return None


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
            problem = _row_problem(row, pid, prev_hash, expected_seq)
            if problem:
                broken = VerifyProblem(pid, expected_seq, problem)
            prev_hash, expected_seq = row.hash, row.seq + 1
        head = heads.get(pid)
        last = expected_seq - 1
        if not broken and head is None and last > 0:
            broken = VerifyProblem(pid, last, "the chain's head row is missing (deleted); "
                                   "the next append rebuilds it")
        elif not broken and head is not None and last > head.seq:
            broken = VerifyProblem(pid, head.seq + 1, f"entry beyond the chain head (seq {head.seq}): inserted")
        elif not broken and head is not None and (last < head.seq or head.hash != prev_hash):
            broken = VerifyProblem(pid, expected_seq, f"chain ends at seq {last} but its head says {head.seq} "
                                   "(entries deleted from the end)")
        if broken:
            problems.append(broken)
    return checked, problems


# -- anchors: chain heads published outside the database -------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A chain head as it was published (by the digest, or `aopbot changelog heads` kept elsewhere)."""

    process_id: str
    seq: int
    hash: str
    source: str = ""  # where it was published, for the report


def heads(session: Session, process_id: str | None = None) -> list[Anchor]:
    """Each chain's last entry (seq and hash), read from the chain itself, by process."""
    last = select(ChangelogEntry.process_id, func.max(ChangelogEntry.seq).label("seq")).group_by(
        ChangelogEntry.process_id)
    if process_id:
        last = last.where(ChangelogEntry.process_id == process_id)
    last = last.subquery()
    q = (select(ChangelogEntry.process_id, ChangelogEntry.seq, ChangelogEntry.hash)
         .join(last, (ChangelogEntry.process_id == last.c.process_id) & (ChangelogEntry.seq == last.c.seq))
         .order_by(ChangelogEntry.process_id))
    return [Anchor(pid, seq, digest) for pid, seq, digest in session.execute(q)]


def check_anchors(session: Session, anchors: Iterable[Anchor]) -> list[VerifyProblem]:
    """Hold the database to published heads: the entry at each anchored seq must still exist with the
    same hash. This catches what the database alone cannot: a chain cut back with its head row
    rewound to match, or a process's whole chain (and head) deleted."""
    problems: dict[str, VerifyProblem] = {}
    for a in sorted(anchors, key=lambda a: (a.process_id, -a.seq)):
        if a.process_id in problems:
            continue
        row = session.scalars(select(ChangelogEntry).where(ChangelogEntry.process_id == a.process_id,
                                                           ChangelogEntry.seq == a.seq)).first()
        where = f" (published {a.source})" if a.source else ""
        if row is not None and row.hash == a.hash:
            continue
        if row is not None:
            problem = f"entry differs from its published head{where}: rewritten"
        else:
            last = _last_entry(session, a.process_id)
            if last is None:
                problem = f"the whole chain is gone, but its head was published at seq {a.seq}{where}: deleted"
            elif last.seq < a.seq:
                problem = (f"chain ends at seq {last.seq} but its head was published at seq {a.seq}{where}: "
                           "entries deleted from the end")
            else:
                problem = f"entry missing, but it was published as the head{where}: deleted"
        problems[a.process_id] = VerifyProblem(a.process_id, a.seq, problem)
    return [problems[k] for k in sorted(problems)]


def parse_anchors(lines: Iterable[str], source: str) -> list[Anchor]:
    """Anchors from `aopbot changelog heads` output (one JSON object per line; blank lines skipped).
    ValueError names the line that is not one."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(Anchor(str(d["process_id"]), int(d["seq"]), str(d["hash"]), f"{source}:{n}"))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source} line {n} is not a head from `aopbot changelog heads`: {e}") from None
    return out


def anchor_to_dict(a: Anchor) -> dict[str, Any]:
    return {"process_id": a.process_id, "seq": a.seq, "hash": a.hash}


def now_stamp() -> str:
    return clock.iso(clock.now())


def latest(session: Session, process_id: str, n: int) -> list[dict[str, Any]]:
    """The last n entries of one process, newest first."""
    q = select(ChangelogEntry).where(ChangelogEntry.process_id == process_id).order_by(
        ChangelogEntry.seq.desc()).limit(n)
    return [row_to_entry(r) for r in session.scalars(q)]
