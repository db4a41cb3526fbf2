"""Acceptance (issue 3, point 2): tier rules for deciding."""

from __future__ import annotations

import json

from bot.domain import changelog, escalations
from bot.sandbox.records import message_text
from tests.conftest import wait_for
from tests.helpers import buttons, click, ephemerals_to, escalation_messages, open_escalation, status_of

KYC = {"process_id": "kyc", "action": {"summary": "Approve KYC for customer 77"}, "rollback_plan": "freeze account"}


def test_tier3_needs_and_shows_a_rollback_plan(services, stub, agent):
    missing = agent.signal(process_id="deploys", action={"summary": "Bump lodash to 4.17.21"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "rollback_plan"
    ok = agent.signal(process_id="deploys", action={"summary": "Bump lodash to 4.17.21"},
                      rollback_plan="Revert PR #42; redeploy v1.8.3")
    assert ok.status_code == 201
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0DEPLOYS", ok.json()["id"])
    assert "*Rollback plan*\nRevert PR #42; redeploy v1.8.3" in message_text(thread)
    # owner@company.com (the escalation owner, an email) was resolved and paged.
    assert any(c.args["channel"] == "U0OWNER" for c in stub.calls_to("chat.postMessage"))


def decide(services, esc_id, user, vote="approve", reason=None):
    return escalations.decide(services.db, esc_id, user, vote, reason)


def test_tier4_two_distinct_people_one_from_compliance(services):
    esc_id = open_escalation(services, **KYC)
    services.outbox.drain()  # resolves S0COMPLIANCE → U0COMP

    assert decide(services, esc_id, "U0ESCOWNER").result == "vote_recorded"
    assert status_of(services, esc_id) == "pending"
    again = decide(services, esc_id, "U0ESCOWNER")
    assert again.result == "already_voted" and again.quorum.approvals == 1
    second = decide(services, esc_id, "U0SECOND")
    assert second.result == "vote_recorded" and second.quorum.approvals == 2 and not second.quorum.compliance_ok
    assert status_of(services, esc_id) == "pending"  # two approvers, neither from compliance
    assert decide(services, esc_id, "U0COMP").result == "decided"
    assert status_of(services, esc_id) == "approved"
    with services.db.transaction() as s:
        entry = next(changelog.iter_all(s))
    assert entry["approvers"] == ["U0ESCOWNER", "U0SECOND", "U0COMP"] and entry["decided_by"] == "U0COMP"


def test_tier4_compliance_alone_is_not_enough(services):
    esc_id = open_escalation(services, **KYC)
    services.outbox.drain()
    assert decide(services, esc_id, "U0COMP").result == "vote_recorded"
    assert decide(services, esc_id, "U0COMP").result == "already_voted"
    assert status_of(services, esc_id) == "pending"
    assert decide(services, esc_id, "U0ESCOWNER").result == "decided"
    assert status_of(services, esc_id) == "approved"


def test_tier4_any_reject_ends_it(services):
    esc_id = open_escalation(services, **KYC)
    services.outbox.drain()
    decide(services, esc_id, "U0ESCOWNER")
    assert decide(services, esc_id, "U0COMP", "reject", "documents expired").result == "decided"
    assert status_of(services, esc_id) == "rejected"
    assert decide(services, esc_id, "U0SECOND").result == "closed"


def test_tier4_thread_shows_progress_and_tells_a_repeat_approver(services, stub, slack):
    esc_id = open_escalation(services, **KYC)
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0KYC", esc_id)
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="progress reply")
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0KYC", esc_id)
    assert "*1 of 2*: approved by <@U0ESCOWNER>; waiting for compliance" in message_text(thread)
    assert buttons(thread)[:2] == ["aop_approve", "aop_reject"]

    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    replies = wait_for(lambda: len(ephemerals_to(stub, "U0ESCOWNER")) == 2 and ephemerals_to(stub, "U0ESCOWNER"),
                       what="repeat-approval reply")
    assert "one person counts once" in replies[1]
    assert status_of(services, esc_id) == "pending"


def test_tier2_stranger_and_non_approver_owner_roles(services):
    esc_id = open_escalation(services)
    services.outbox.drain()
    # The informed PM and the consulted security group may not decide.
    for user in ("U0PM", "U0SEC", "U0STRANGER"):
        outcome = decide(services, esc_id, user)
        assert outcome.result == "not_allowed"
        assert outcome.deciders == ["U0ESCOWNER", "S0REFUNDERS", "U0DRI"]
    assert decide(services, esc_id, "U0DRI").result == "decided"  # the accountable owner may
    assert json.dumps(status_of(services, esc_id)) == '"approved"'


def test_im_on_it_button_in_the_thread(services, stub, slack):
    esc_id = open_escalation(services)
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    click(slack, stub, "U0STRANGER", "aop_ack", thread)
    refusal = wait_for(lambda: ephemerals_to(stub, "U0STRANGER"), what="refusal")
    assert "can't acknowledge" in refusal[0]
    click(slack, stub, "U0BACKUP", "aop_ack", thread)  # a later level of the policy may take it
    wait_for(lambda: status_of(services, esc_id) == "acknowledged", what="acknowledgement")
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert "<@U0BACKUP> is on it" in message_text(thread) and buttons(thread) == ["aop_approve", "aop_reject"]
