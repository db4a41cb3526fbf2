"""Small test helpers over the stand-in's view of Slack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from bot.api.schemas import EscalationSignal
from bot.domain import intake, tokens
from bot.domain.models import Escalation
from bot.sandbox.records import Message, buttons
from tests.slack_requests import block_action
from tests.slack_stub import SlackStub

# A registry with five errors of different kinds (tier, channel, person, duration, tier-4 rule, duplicate id).
BAD_REGISTRY = """
processes:
  - id: refunds
    name: Support refunds
    tier: 5
    channel: not-a-channel
    raci:
      escalation: nobody
    escalation_policy:
      - after: soon
        notify: [U0A]
  - id: kyc
    name: KYC
    tier: 4
    channel: C0KYC
    raci:
      escalation: U0B
  - id: refunds
    name: Dup
    tier: 1
    channel: C0DUP
    raci:
      escalation: U0C
"""

SPEC_FIELDS = {
    "process_id": str, "timestamp": str, "model": str, "inputs": dict, "tools_invoked": list,
    "policy_checks": list, "decision": str, "human_escalation": bool, "owner": str,
}


def escalation_messages(stub: SlackStub, channel: str, esc_id: str) -> tuple[Message, Message]:
    """(parent, thread card) of one escalation in its channel."""
    mine = [m for m in stub.channel_messages(channel) if esc_id in json.dumps(m.blocks) or
            any(esc_id in json.dumps(h) for h in m.history)]
    parents = [m for m in mine if m.thread_ts is None]
    threads = [m for m in mine if m.thread_ts is not None]
    assert len(parents) == 1 and len(threads) == 1, f"expected one parent and one thread message, got {mine}"
    assert threads[0].thread_ts == parents[0].ts
    return parents[0], threads[0]


@contextmanager
def database_held(db, table: str) -> Iterator[Connection]:
    """A slow database, for real: while the block runs, the test's own open transaction (yielded)
    makes the bot wait on `table` (SQLite: the write lock, which every transaction of the bot takes at
    BEGIN; PostgreSQL: the table's lock, which even a read waits for)."""
    with db.engine.connect() as holder:
        tx = holder.begin()
        try:
            if db.is_postgres:
                holder.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield holder
        finally:
            tx.rollback()


def end_sessions_waiting(holder: Connection, statement: str) -> int:
    """PostgreSQL: end the bot's database sessions that wait on the holder's lock in a statement that
    starts with `statement` (as the server would end them); how many it ended."""
    ended = holder.execute(text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE :statement"
    ), {"statement": statement + "%"}).scalars().all()
    return sum(ended)


def open_escalation(services, **body):
    body.setdefault("process_id", "refunds")
    body.setdefault("action", {"summary": "Refund $120 on ticket 123", "tools": ["billing.refund"]})
    with services.db.transaction() as s:
        tok = tokens.create(s, [body["process_id"]], "agent")
        token = s.get(tokens.AgentToken, tok.id)
    opened = intake.open_escalation(services.db, services.registry, token, EscalationSignal(**body))
    assert opened.created
    return opened.id


def status_of(services, esc_id: str) -> str:
    with services.db.transaction() as s:
        return s.get(Escalation, esc_id).status


def click(slack, stub: SlackStub, user: str, action_id: str, msg: Message):
    value = next(e["value"] for b in msg.blocks if b.get("type") == "actions"
                 for e in b["elements"] if e["action_id"] == action_id)
    message = {"type": "message", "ts": msg.ts, "thread_ts": msg.thread_ts, "text": msg.text, "blocks": msg.blocks}
    resp = slack.interaction(block_action(user, action_id, value, msg.channel, message))
    assert resp.status_code == 200, resp.text
    return resp


def ephemerals_to(stub: SlackStub, user: str) -> list[str]:
    return [c.args.get("text", "") for c in stub.calls_to("chat.postEphemeral") if c.args.get("user") == user]


def check_spec_entry(entry: dict) -> None:
    for name, typ in SPEC_FIELDS.items():
        assert name in entry, f"change-log entry lacks {name}"
        assert isinstance(entry[name], typ), f"{name} is {type(entry[name]).__name__}, not {typ.__name__}"
    assert entry["timestamp"].endswith("Z")
    assert all(isinstance(x, str) for x in entry["tools_invoked"] + entry["policy_checks"])


__all__ = ["buttons", "click", "ephemerals_to", "escalation_messages", "check_spec_entry", "open_escalation",
           "status_of"]
