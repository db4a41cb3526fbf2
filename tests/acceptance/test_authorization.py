"""Every action × every person who may not take it, through signed Slack requests: nothing changes, and
the person is told privately who can. The agent's own Slack identity is refused even when it is also
an approver (through a group)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

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
    body = slack.ask(NOT_OWNERS[who], verb)
    assert "Nothing changed" in json.dumps(body)
    assert slack.command("U0ESCOWNER", "who refunds").status_code == 200
    from bot.domain import processes

    with services.db.transaction() as s:
        state = processes.state_of(s, "refunds")
    assert state is None or state.status == "active"


# Who may not review a refunds QA card: everyone but its escalation owner (refunds sets no qa.reviewers).
NOT_REVIEWERS = {**OUTSIDERS, "an approver who is not a reviewer": "U0REFUNDER2", "the accountable owner": "U0DRI"}


@pytest.fixture
def qa_card(services, stub, make_agent):
    """A refunds action its agent recorded and sampling QA picked (the first such of a fixed run)."""
    from bot.domain.models import QaReview
    from bot.surfaces import qa_blocks

    agent = make_agent(agent_user=AGENT_IDENTITY)
    for i in range(300):
        agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m", "decision": f"did {i}",
                                                   "timestamp": f"2026-11-02T10:{i // 60:02d}:{i % 60:02d}Z"})
        with services.db.transaction() as s:
            review_id = s.scalar(select(QaReview.id))
        if review_id is not None:
            break
    services.outbox.drain()
    [card] = [m for m in stub.channel_messages("C0REFUNDS") if qa_blocks.ACTION_QA_OK in json.dumps(m.blocks)]
    return review_id, card


def qa_status(services, review_id: int) -> str:
    from bot.domain.models import QaReview

    with services.db.transaction() as s:
        return s.get(QaReview, review_id).status


def test_only_reviewers_review_a_qa_card(services, stub, slack, qa_card):
    """Every QA button and a forged Wrong submission, from everyone who may not review (one card, to
    keep it quick): each is told who can, privately, and the card stays unreviewed."""
    from bot.surfaces import qa_blocks

    review_id, card = qa_card
    for who, user in NOT_REVIEWERS.items():
        for action_id in (qa_blocks.ACTION_QA_OK, qa_blocks.ACTION_QA_WRONG):
            before = len(ephemerals_to(stub, user))
            click(slack, stub, user, action_id, card)
            told = wait_for(lambda u=user, n=before: ephemerals_to(stub, u)[n:], what=f"a refusal to {who}")
            assert "can't review" in told[0] and "<@U0ESCOWNER>" in told[0], (who, action_id)
        meta = qa_blocks.QaModalMeta(q=review_id, c="C0REFUNDS").model_dump_json()
        values = {qa_blocks.NOTE_BLOCK: {qa_blocks.NOTE_INPUT: {"type": "plain_text_input", "value": "bad"}}}
        before = len(ephemerals_to(stub, user))
        assert slack.interaction(view_submission(user, qa_blocks.QA_WRONG_MODAL, meta, values)).status_code == 200
        wait_for(lambda u=user, n=before: ephemerals_to(stub, u)[n:], what=f"a refusal of {who}'s forged note")
    assert qa_status(services, review_id) == "pending" and not stub.calls_to("views.open")
