"""Acceptance (issue 3): escalation levels, repeat, acknowledgement, expiry, cancel, snapshots —
driven by the scheduler's tick while freezegun travels in time (no sleeping)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from freezegun import freeze_time

from bot.domain import escalations
from bot.domain.models import Escalation
from bot.domain.registry import load_registry_file, store_snapshot
from bot.sandbox.records import message_text
from tests.helpers import buttons, escalation_messages, open_escalation, status_of

START = "2026-11-25 10:00:00"


def dms_to(stub, user: str) -> int:
    return len([c for c in stub.calls_to("chat.postMessage") if c.args["channel"] == user])


def changelog_decisions(services) -> list[str]:
    from bot.domain import changelog

    with services.db.transaction() as s:
        return [e["decision"] for e in changelog.iter_all(s)]


def test_levels_fire_exactly_at_after_and_repeat(services, stub):
    with freeze_time(START) as frozen:
        esc_id = open_escalation(services)
        services.tick()
        assert (dms_to(stub, "U0ESCOWNER"), dms_to(stub, "U0BACKUP")) == (1, 0)

        frozen.tick(timedelta(minutes=15) - timedelta(seconds=1))
        services.tick()
        assert dms_to(stub, "U0BACKUP") == 0, "level 2 paged early"
        frozen.tick(timedelta(seconds=1))
        services.tick()
        assert dms_to(stub, "U0BACKUP") == 1
        _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
        notes = [m for m in stub.channel_messages("C0REFUNDS") if m.thread_ts and m.ts != thread.ts]
        assert len(notes) == 1
        assert "paging level 2" in message_text(notes[0]) and "<@U0BACKUP>" in message_text(notes[0])

        frozen.tick(timedelta(minutes=15))
        services.tick()
        assert dms_to(stub, "U0ONCALL") == 1  # the S0ONCALL group, resolved to its members
        frozen.tick(timedelta(minutes=15))  # 45 min: the policy repeats once
        services.tick()
        assert dms_to(stub, "U0ESCOWNER") == 2
        for _ in range(6):  # well past the last step: nothing more
            frozen.tick(timedelta(minutes=15))
            services.tick()
        assert (dms_to(stub, "U0ESCOWNER"), dms_to(stub, "U0BACKUP"), dms_to(stub, "U0ONCALL")) == (2, 2, 2)
        repage_dm = next(c for c in stub.calls_to("chat.postMessage") if c.args["channel"] == "U0BACKUP")
        assert "Re-page" in json.dumps(repage_dm.args["blocks"])
    assert stub.violations == []


def test_a_late_tick_fires_what_was_missed_once(services, stub):
    with freeze_time(START) as frozen:
        open_escalation(services)
        services.tick()
        frozen.tick(timedelta(minutes=31))  # the bot was away for two levels
        services.tick()
        services.tick()
        assert (dms_to(stub, "U0BACKUP"), dms_to(stub, "U0ONCALL")) == (1, 1)


def test_acknowledgement_stops_repaging_but_the_decision_is_still_needed(services, stub):
    with freeze_time(START) as frozen:
        esc_id = open_escalation(services)
        services.tick()
        frozen.tick(timedelta(minutes=5))
        assert escalations.acknowledge(services.db, esc_id, "U0ESCOWNER").result == "acknowledged"
        services.tick()
        _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
        assert "<@U0ESCOWNER> is on it" in message_text(thread)
        assert buttons(thread) == ["aop_approve", "aop_reject"]
        frozen.tick(timedelta(hours=1))
        services.tick()
        assert dms_to(stub, "U0BACKUP") == 0 and dms_to(stub, "U0ONCALL") == 0
        assert status_of(services, esc_id) == "acknowledged"
        assert changelog_decisions(services) == []  # not an outcome yet
        assert escalations.decide(services.db, esc_id, "U0REFUNDER2", "approve").result == "decided"
        assert status_of(services, esc_id) == "approved"


def test_tier0_acknowledge_ends_it(services, stub):
    with freeze_time(START):
        esc_id = open_escalation(services, process_id="summaries", action={"summary": "Post the weekly summary"})
        services.tick()
        _, thread = escalation_messages(stub, "C0SUMMARIES", esc_id)
        assert buttons(thread) == ["aop_ack"]
        assert escalations.acknowledge(services.db, esc_id, "U0STRANGER").result == "not_allowed"
        assert escalations.acknowledge(services.db, esc_id, "U0ESCOWNER").result == "acknowledged"
        services.tick()
        parent, thread = escalation_messages(stub, "C0SUMMARIES", esc_id)
        assert buttons(thread) == [] and "Acknowledged" in message_text(parent)
        assert status_of(services, esc_id) == "acknowledged"
        assert changelog_decisions(services) == ["acknowledged"]


def test_expiry_lands_at_its_deadline(services, stub):
    with freeze_time(START) as frozen:
        esc_id = open_escalation(services, expires_in_s=600)
        services.tick()
        frozen.tick(timedelta(seconds=599))
        services.tick()
        assert status_of(services, esc_id) == "pending"
        frozen.tick(timedelta(seconds=1))
        services.tick()
        assert status_of(services, esc_id) == "expired"
        parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
        assert buttons(thread) == [] and "Expired" in message_text(parent) and "Expired" in message_text(thread)
        assert changelog_decisions(services) == ["expired"]
        frozen.tick(timedelta(hours=2))  # no page after expiry
        services.tick()
        assert dms_to(stub, "U0BACKUP") == 0


def test_process_expiry_default_applies(services):
    with freeze_time(START):
        esc_id = open_escalation(services)
        with services.db.transaction() as s:
            esc = s.get(Escalation, esc_id)
            assert esc.expires_at - esc.created_at == timedelta(hours=4)  # approvals.expires_after


def test_registry_edit_does_not_change_an_open_escalation(services, stub, registry_path):
    first = open_escalation(services)
    registry_path.write_text(registry_path.read_text().replace("- notify: [U0ESCOWNER]", "- notify: [U0NEWOWNER]"))
    with services.db.transaction() as s:
        store_snapshot(s, load_registry_file(registry_path), str(registry_path))
    services.refresh_registry()
    second = open_escalation(services)
    services.outbox.drain()
    dm_targets = [(c.args["channel"]) for c in stub.calls_to("chat.postMessage") if c.args["channel"].startswith("U")]
    assert dm_targets == ["U0ESCOWNER", "U0NEWOWNER"]
    with services.db.transaction() as s:
        assert s.get(Escalation, first).snapshot["levels"][0]["notify"] == ["U0ESCOWNER"]
        assert s.get(Escalation, second).snapshot["levels"][0]["notify"] == ["U0NEWOWNER"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cancel_by_the_agent_that_raised_it(services, stub, agent, make_agent):
    esc_id = agent.signal(process_id="refunds").json()["id"]
    services.outbox.drain()
    other = make_agent()
    assert other.http.post(f"/api/v1/escalations/{esc_id}/cancel").status_code == 403
    resp = agent.http.post(f"/api/v1/escalations/{esc_id}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert agent.http.post(f"/api/v1/escalations/{esc_id}/cancel").json()["status"] == "cancelled"  # idempotent
    services.outbox.drain()
    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert buttons(thread) == [] and "Cancelled" in message_text(parent)
    assert changelog_decisions(services) == ["cancelled"]


def test_a_click_after_the_deadline_does_not_beat_expiry(services, stub):
    """Even before any tick has expired it, an escalation past its deadline cannot be decided."""
    with freeze_time(START) as frozen:
        esc_id = open_escalation(services, expires_in_s=60)
        other = open_escalation(services, process_id="summaries", action={"summary": "x"}, expires_in_s=60)
        services.tick()
        frozen.tick(timedelta(seconds=61))  # no tick runs from here on
        assert escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve").result == "closed"
        assert escalations.acknowledge(services.db, other, "U0ESCOWNER").result == "closed"
        assert (status_of(services, esc_id), status_of(services, other)) == ("expired", "expired")
        assert changelog_decisions(services) == ["expired", "expired"]


MENTION = re.compile(r"<@(U[A-Z0-9]+)>|<!subteam\^(S[A-Z0-9]+)>")


def mentions_posted(stub, channel: str) -> list[set[str]]:
    """Who each channel post (not an update: edits notify nobody) mentions, in order."""
    return [{a or b for a, b in MENTION.findall(json.dumps(c.args.get("blocks")) + c.args.get("text", ""))}
            for c in stub.calls_to("chat.postMessage") if c.args["channel"] == channel]


def test_only_the_people_paged_at_a_level_are_mentioned(services, stub):
    """The refunds approvers are U0ESCOWNER and the S0REFUNDERS group, but only U0ESCOWNER is paged
    first: the card names the group by its handle without notifying its members, and each re-page
    note mentions that level's people only."""
    stub.add_user("U0ESCOWNER", "Esc Owner")
    stub.add_group("S0REFUNDERS", "refunders", ["U0REFUNDER1", "U0REFUNDER2"])
    with freeze_time(START) as frozen:
        esc_id = open_escalation(services)
        services.tick()
        _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
        assert "Approvers: <@U0ESCOWNER>, *@refunders*" in message_text(thread)
        assert mentions_posted(stub, "C0REFUNDS") == [set(), {"U0ESCOWNER"}]  # parent, thread card
        frozen.tick(timedelta(minutes=15))
        services.tick()
        frozen.tick(timedelta(minutes=15))
        services.tick()
    assert mentions_posted(stub, "C0REFUNDS")[2:] == [{"U0BACKUP"}, {"S0ONCALL"}]


def test_a_click_slack_delivered_before_the_deadline_wins_over_expiry(services, stub):
    """Accepted (acked) a second before the deadline but applied after it, by a crash's replay, with
    a tick's expiry pass in between: the approval stands; the deadline is judged at the click."""
    from bot.domain import inbox

    with freeze_time(START) as frozen:
        esc_id = open_escalation(services)  # refunds: expires after 4 h
        services.tick()
        frozen.tick(timedelta(hours=4) - timedelta(seconds=1))
        inbox.accept(services.db, "approve", "U0ESCOWNER", esc_id)  # the bot dies before applying it
        frozen.tick(timedelta(seconds=2))
        assert escalations.expire_due(services.db) == 0  # the pending click holds expiry back
        frozen.tick(timedelta(seconds=15))
        services.tick()  # the replay applies it, judged at the click
        assert status_of(services, esc_id) == "approved"
        esc_late = open_escalation(services, idempotency_key="late")
        frozen.tick(timedelta(hours=4, seconds=1))
        inbox.accept(services.db, "approve", "U0ESCOWNER", esc_late)  # after its deadline: too late
        frozen.tick(timedelta(seconds=15))
        services.tick()
        assert status_of(services, esc_late) == "expired"
