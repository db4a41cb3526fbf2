"""An agent's own record of an action it took without escalating: checked against its process and
appended to that process's change-log chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.api.schemas import ChangelogRecord
from bot.domain import changelog, intake, model_changes, processes, qa
from bot.domain.errors import Invalid, NotFound
from bot.domain.models import AgentToken
from bot.domain.registry import Registry
from bot.ops import clock
from bot.ops.db import Database


def record_action(db: Database, registry: Registry, token: AgentToken, record: ChangelogRecord, *,
                  qa_key: bytes, on_sampled: Callable[[], None] | None = None) -> dict[str, Any]:
    """Check the record against its process (scope, time) and append it to the chain; when sampling
    QA picks it (keyed with qa_key), its review card is queued with it and on_sampled runs after the
    commit. The answer is the same either way: an agent never learns what is sampled."""
    proc = registry.get(record.process_id)
    if proc is None:
        raise NotFound(f"unknown process {record.process_id!r}", field="process_id")
    intake.check_scope(token, proc.id)
    intake.refuse_retired(proc)
    entry = record.model_dump(mode="json", exclude={"callback_url"})  # kept with a sampled one's review only
    for optional in ("cost_usd", "action_hash"):  # absent stays absent (entries before them had none)
        if entry.get(optional) is None:
            entry.pop(optional, None)
    if record.timestamp is None:
        entry["timestamp"] = clock.iso(clock.now())
    else:
        try:
            entry["timestamp"] = clock.iso(clock.parse_iso(record.timestamp))
        except ValueError:
            raise Invalid("timestamp must be ISO 8601 with a time zone", field="timestamp") from None
    entry["owner"] = record.owner or proc.raci.accountable or proc.raci.escalation or ""
    entry["tier"] = proc.tier
    try:
        with db.transaction() as s:
            state = processes.state_of(s, proc.id)
            if state.status == "paused":  # the kill switch stops what an agent does alone as well
                intake.refuse_paused(proc.id, state.by, state.reason)
            # The allowlist holds for what it did alone too (after the pause: SPEC's order, 423 then 422).
            intake.check_tools(proc, record.tools_invoked, "tools_invoked", acted=True)
            # The change is dated like the entry, so the entry counts on the new model's side.
            model_changes.observe(s, proc, record.model, token.name, clock.parse_iso(entry["timestamp"]))
            stored = changelog.append(s, entry)
            sampled = qa.sample(s, proc, token, stored, record.callback_url, qa_key)
    except Invalid as broken:
        intake.count_violation(db, proc.id, broken)
        raise
    if sampled is not None and on_sampled is not None:
        on_sampled()
    return stored
