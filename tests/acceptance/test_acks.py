"""Acceptance (issue 12): Slack hears back at once. A listener acks and returns; what follows (the
decision, private replies, the reject dialog, App Home) runs on the bot's own threads, so neither a
slow Slack nor a slow database holds the HTTP answer past its budget, and a click Slack saw
acknowledged is still applied, or the person is told it did not go through. (Slow /aop answers:
test_commands.py.)"""

from __future__ import annotations

import time

import pytest

from bot.sandbox.records import message_text
from handlers.common import ACK_BUDGET_S
from tests.conftest import wait_for
from tests.helpers import click, database_held, end_sessions_waiting, ephemerals_to, escalation_messages
from tests.slack_requests import block_action

SLOW_SLACK_S = 1.5


def timed(send) -> float:
    started = time.monotonic()
    resp = send()
    assert resp.status_code == 200, resp.text
    return time.monotonic() - started


def test_no_click_or_event_waits_on_slack(services, stub, slack, agent):
    """Every Web API call takes 1.5 s: the answer to a refused click, a stale one, the click that
    opens the reject dialog and App Home being opened each comes back before one Slack call could
    have ended, and what each asked for still happens."""
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)

    # Bolt asks Slack who the bot is (auth.test) on the first request a process gets, then remembers.
    slack.event({"type": "app_home_opened", "user": "U0ESCOWNER", "tab": "messages", "channel": "D1"})

    def slow(method, args):
        time.sleep(SLOW_SLACK_S)
        return None

    stub.fail = slow
    stale = {"type": "message", "ts": thread.ts, "thread_ts": thread.thread_ts, "blocks": thread.blocks}
    took = {
        "refused": timed(lambda: click(slack, stub, "U0STRANGER", "aop_approve", thread)),
        "stale": timed(lambda: slack.interaction(block_action("U0PM", "aop_approve", "{", "C0REFUNDS", stale))),
        "dialog": timed(lambda: click(slack, stub, "U0ESCOWNER", "aop_reject", thread)),
        "home": timed(lambda: slack.event({"type": "app_home_opened", "user": "U0ESCOWNER", "tab": "home",
                                           "channel": "D1"})),
    }
    assert all(t < SLOW_SLACK_S - 0.5 for t in took.values()), took
    told = wait_for(lambda: ephemerals_to(stub, "U0STRANGER"), what="the refusal")
    assert "can't decide" in told[0]
    assert "out of date" in wait_for(lambda: ephemerals_to(stub, "U0PM"), what="the stale note")[0]
    modal = wait_for(lambda: list(stub.modals.values()), what="the reject dialog")[0]
    assert modal.user == "U0ESCOWNER"
    home = wait_for(lambda: stub.home.get("U0ESCOWNER"), what="App Home")
    assert "Refund $120 on ticket 123" in message_text(home)
    assert agent.get(esc_id)["status"] == "pending"


def test_a_click_the_database_holds_past_the_budget_is_acked_then_applied(services, stub, slack, agent, db):
    """The click's INSERT waits on the database for longer than the ack budget: Slack gets its ack at
    the budget (while the database is still held, so before the click could be written), and the
    click is applied once the database answers, after the listener has long returned."""
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    with database_held(db, "slack_inbox"):
        acked_after = timed(lambda: click(slack, stub, "U0ESCOWNER", "aop_approve", thread))
    assert ACK_BUDGET_S <= acked_after < ACK_BUDGET_S + 1.0, acked_after
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="the click, applied after its ack")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # ends the bot's own database session
def test_a_click_whose_write_fails_after_its_ack_is_told_it_did_not_go_through(services, stub, slack, agent, db):
    """Acked at the budget while its INSERT waits; then the database drops that session: the person
    is told it did not go through, nothing changed, and the button still works."""
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    with database_held(db, "slack_inbox") as holder:
        assert timed(lambda: click(slack, stub, "U0ESCOWNER", "aop_approve", thread)) >= ACK_BUDGET_S
        assert end_sessions_waiting(holder, "INSERT INTO slack_inbox") == 1
    told = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="a private note")
    assert "did not go through" in told[0] and "try again" in told[0]
    assert agent.get(esc_id)["status"] == "pending"
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="the click made again")
