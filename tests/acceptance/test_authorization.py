"""Every action × every person who may not take it, through signed Slack requests: nothing changes, and
the person is told privately who can. The agent's own Slack identity is refused even when it is also
an approver (through a group)."""

from __future__ import annotations

import json

import pytest

from bot.domain import escalations
from bot.domain.models import Vote
from bot.surfaces import blocks
from tests.conftest import wait_for
from tests.helpers import click, ephemerals_to, escalation_messages, status_of
from tests.slack_requests import view_submission

AGENT_IDENTITY = "U0REFUNDER1"  # the agent's Slack user, and a member of the approvers' group S0REFUNDERS
# Who may not decide or acknowledge a refunds escalation: nobody's approver or paged person.
OUTSIDERS = {
    "a stranger": "U0STRANGER",
    "the informed PM": "U0PM",
    "a consulted security member": "U0SEC",
    "the agent itself": AGENT_IDENTITY,
}
# Who may not pause or resume refunds: everyone but its accountable and escalation owners.
NOT_OWNERS = {**OUTSIDERS, "an approver who is not an owner": "U0REFUNDER2", "the backup on level 2": "U0BACKUP"}


@pytest.fixture
def pending(services, stub, make_agent):
    agent = make_agent(agent_user=AGENT_IDENTITY)
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    return esc_id, thread


def votes(services, esc_id: str) -> list[Vote]:
    with services.db.transaction() as s:
        return escalations.votes_of(s, esc_id)


@pytest.mark.parametrize("action_id", [blocks.ACTION_APPROVE, blocks.ACTION_REJECT, blocks.ACTION_ACK])
@pytest.mark.parametrize("who", list(OUTSIDERS))
def test_outsiders_cannot_decide_or_acknowledge(services, stub, slack, pending, action_id, who):
    esc_id, thread = pending
    user = OUTSIDERS[who]
    click(slack, stub, user, action_id, thread)
    told = wait_for(lambda: ephemerals_to(stub, user), what=f"a private refusal to {who}")
    assert "can't" in told[0] and "<@U0ESCOWNER>" in told[0]  # says who can
    assert status_of(services, esc_id) == "pending" and votes(services, esc_id) == []
    assert not stub.calls_to("views.open")  # Reject opened no modal for them


@pytest.mark.parametrize("who", list(OUTSIDERS))
def test_a_forged_reject_submission_from_an_outsider_changes_nothing(services, stub, slack, pending, who):
    """A modal submission that never came from an allowed click (crafted metadata) is still refused."""
    esc_id, _ = pending
    user = OUTSIDERS[who]
    meta = blocks.RejectModalMeta(e=esc_id, c="C0REFUNDS").model_dump_json()
    values = {blocks.REASON_BLOCK: {blocks.REASON_INPUT: {"type": "plain_text_input", "value": "no"}}}
    resp = slack.interaction(view_submission(user, blocks.REJECT_MODAL, meta, values))
    assert resp.status_code == 200
    wait_for(lambda: ephemerals_to(stub, user), what=f"a private refusal to {who}")
    assert status_of(services, esc_id) == "pending" and votes(services, esc_id) == []


@pytest.mark.parametrize("verb", ["pause refunds looping", "resume refunds"])
@pytest.mark.parametrize("who", list(NOT_OWNERS))
def test_only_owners_pause_or_resume(services, slack, verb, who):
    body = slack.command(NOT_OWNERS[who], verb).json()
    assert "Nothing changed" in json.dumps(body)
    assert slack.command("U0ESCOWNER", "who refunds").status_code == 200
    from bot.domain import processes

    with services.db.transaction() as s:
        state = processes.state_of(s, "refunds")
    assert state is None or state.status == "active"
