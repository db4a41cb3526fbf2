"""Acceptance (issue 2): the loop end to end — signal, page, decision in the thread, change log."""

from __future__ import annotations

import json

from bot.sandbox.records import message_text
from tests.conftest import wait_for
from tests.helpers import buttons, check_spec_entry, click, ephemerals_to, escalation_messages
from tests.slack_requests import view_submission

SIGNAL = {
    "process_id": "refunds",
    "idempotency_key": "run-8812-step-4",
    "model": "vendor:model-name",
    "inputs": {"ticket_id": "123", "customer_tier": "pro"},
    "action": {"summary": "Refund $120 on ticket 123", "tools": ["billing.refund"], "params": {"amount": 120}},
    "policy_checks": [{"name": "refund_limit_50", "passed": False, "detail": "120 > 50"}],
    "reason": "policy_check_failed",
    "message": "Customer says the order never arrived.",
    "trace_id": "4bf92f3577b34da6",
}


def test_signal_page_approve_changelog(services, stub, slack, agent):
    resp = agent.signal(**SIGNAL)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    esc_id = created["id"]
    assert created["status"] == "pending" and created["tier"] == 2
    assert created["poll_url"] == f"http://aopbot.test/api/v1/escalations/{esc_id}"

    # Nothing reaches Slack inside the request; the outbox pages after commit.
    assert stub.calls_to("chat.postMessage") == []
    services.outbox.drain()

    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert "Support refunds" in message_text(parent) and "Refund $120 on ticket 123" in message_text(parent)
    assert buttons(thread) == ["aop_approve", "aop_reject", "aop_ack"]
    assert "refund_limit_50" in message_text(thread) and "120 &gt; 50" in message_text(thread)
    dms = [m for m in stub.messages.values() if m.channel == "D0ESCOWNER"]
    assert len(dms) == 1
    assert f"/archives/C0REFUNDS/p{thread.ts.replace('.', '')}" in message_text(dms[0])

    # A stranger's click is refused privately, naming who can decide; nothing changes.
    click(slack, stub, "U0STRANGER", "aop_approve", thread)
    refusal = wait_for(lambda: ephemerals_to(stub, "U0STRANGER"), what="the stranger's ephemeral reply")
    assert "Only <@U0ESCOWNER>, <!subteam^S0REFUNDERS>, <@U0DRI> can" in refusal[0]
    assert agent.get(esc_id)["status"] == "pending"

    # An approver (a member of the S0REFUNDERS group) approves.
    click(slack, stub, "U0REFUNDER1", "aop_approve", thread)
    view = wait_for(lambda: (v := agent.get(esc_id))["status"] == "approved" and v, what="approval")
    assert view["decision"] == "approved"
    assert view["decided_by"] == "U0REFUNDER1"
    assert view["decided_at"].endswith("Z")
    assert view["approvals"][0]["user"] == "U0REFUNDER1"

    # Exactly one change-log entry, with every SPEC §5 field.
    log = agent.http.get("/api/v1/changelog", params={"process_id": "refunds"})
    assert log.status_code == 200 and log.headers["content-type"].startswith("application/x-ndjson")
    entries = [json.loads(line) for line in log.text.splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    check_spec_entry(entry)
    assert entry["decision"] == "approved" and entry["human_escalation"] is True
    assert entry["owner"] == "U0DRI" and entry["model"] == "vendor:model-name"
    assert entry["tools_invoked"] == ["billing.refund"] and entry["policy_checks"] == ["refund_limit_50"]
    assert entry["escalation_id"] == esc_id and entry["action_hash"] == view["action_hash"]
    assert entry["approvers"] == ["U0REFUNDER1"]

    # Parent and thread are updated in place: status, who; no buttons left.
    services.outbox.drain()
    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    for msg in (parent, thread):
        assert "Approved" in message_text(msg) and "<@U0REFUNDER1>" in message_text(msg)
        assert buttons(msg) == []
    updates_before = len(stub.calls_to("chat.update"))

    # A second click (from the old message, still holding buttons) changes nothing.
    old_thread = type(thread)(thread.channel, thread.ts, thread.text, thread.history[0]["blocks"], thread.thread_ts)
    click(slack, stub, "U0ESCOWNER", "aop_approve", old_thread)
    reply = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="already-decided reply")
    assert "Already approved by <@U0REFUNDER1>" in reply[0]
    services.outbox.drain()
    assert len(stub.calls_to("chat.update")) == updates_before
    assert len(agent.http.get("/api/v1/changelog").text.splitlines()) == 1
    assert agent.get(esc_id)["decided_by"] == "U0REFUNDER1"
    assert stub.violations == []


def test_reject_through_modal_reaches_changelog_and_agent(services, stub, slack, agent):
    esc_id = agent.signal(**SIGNAL).json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)

    click(slack, stub, "U0ESCOWNER", "aop_reject", thread)
    opened = wait_for(lambda: stub.calls_to("views.open"), what="the reject modal")
    view = opened[0].args["view"]
    assert view["callback_id"] == "aop_reject_modal"
    assert agent.get(esc_id)["status"] == "pending"  # opening the modal decides nothing

    # An empty reason is refused inside the modal.
    blank = view_submission("U0ESCOWNER", "aop_reject_modal", view["private_metadata"],
                            {"reason": {"reason_input": {"type": "plain_text_input", "value": "   "}}})
    resp = slack.interaction(blank)
    assert resp.status_code == 200 and resp.json()["response_action"] == "errors"
    assert "reason" in resp.json()["errors"]
    assert agent.get(esc_id)["status"] == "pending"

    reason = "Order shows as delivered; ask for a photo first."
    submit = view_submission("U0ESCOWNER", "aop_reject_modal", view["private_metadata"],
                             {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}})
    assert slack.interaction(submit).status_code == 200
    got = wait_for(lambda: (v := agent.get(esc_id))["status"] == "rejected" and v, what="rejection")
    assert got["reason"] == reason and got["decided_by"] == "U0ESCOWNER" and got["decision"] == "rejected"

    entries = [json.loads(x) for x in agent.http.get("/api/v1/changelog").text.splitlines()]
    assert len(entries) == 1 and entries[0]["decision"] == "rejected" and entries[0]["reason"] == reason
    check_spec_entry(entries[0])

    services.outbox.drain()
    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert "Rejected" in message_text(thread) and "ask for a photo first" in message_text(thread)
    assert buttons(thread) == [] and buttons(parent) == []
    assert stub.violations == []


def test_the_agent_itself_can_never_approve(services, stub, slack, make_agent):
    """A token bound to a Slack identity (the agent's own bot user) cannot approve its own action,
    even when that identity is listed as an approver."""
    agent = make_agent(agent_user="U0ESCOWNER")
    esc_id = agent.signal(**SIGNAL).json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    reply = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="refusal")
    assert "can't decide" in reply[0]
    assert agent.get(esc_id)["status"] == "pending"
