"""Acceptance (issue 4, point 3): App Home for an approver with two pending escalations; approving
there has the same effect as in the thread."""

from __future__ import annotations

import json

from bot.sandbox.records import message_text
from tests.conftest import wait_for
from tests.helpers import buttons, escalation_messages, open_escalation, status_of


def home_payload(user: str, action_id: str, value: str, view: dict) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy", "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "view", "view_id": "VHOME"},
        "trigger_id": "1.2.3",
        "view": {"id": "VHOME", "type": "home", "blocks": view["blocks"], "callback_id": "", "hash": "1",
                 "private_metadata": "", "state": {"values": {}}},
        "actions": [{"action_id": action_id, "block_id": "home", "value": value, "type": "button",
                     "action_ts": "1"}],
    }


def published_to(stub, user: str) -> list[dict]:
    return [c.args["view"] for c in stub.calls_to("views.publish") if c.args["user_id"] == user]


def test_app_home_shows_waiting_items_and_decides_like_the_thread(services, stub, slack):
    first = open_escalation(services)
    second = open_escalation(services, action={"summary": "Refund $75 on ticket 456", "tools": ["billing.refund"]})
    services.outbox.drain()

    opened = slack.event({"type": "app_home_opened", "user": "U0REFUNDER1", "tab": "home", "channel": "D1"})
    assert opened.status_code == 200
    view = wait_for(lambda: published_to(stub, "U0REFUNDER1"), what="App Home publish")[0]
    text = message_text(view)
    assert "Waiting on you (2)" in text
    assert "Refund $120 on ticket 123" in text and "Refund $75 on ticket 456" in text
    assert "*Support refunds* (`refunds`, tier 2): approver" in text
    approve_values = [e["value"] for b in view["blocks"] if b.get("type") == "actions" for e in b["elements"]
                      if e["action_id"] == "aop_approve"]
    assert sorted(json.loads(v)["e"] for v in approve_values) == sorted([first, second])

    value = json.dumps({"e": first}, separators=(",", ":"))
    assert slack.interaction(home_payload("U0REFUNDER1", "aop_approve", value, view)).status_code == 200
    wait_for(lambda: status_of(services, first) == "approved", what="approval from App Home")
    refreshed = wait_for(lambda: len(published_to(stub, "U0REFUNDER1")) == 2 and published_to(stub, "U0REFUNDER1"),
                         what="App Home refresh")[1]
    assert "Waiting on you (1)" in message_text(refreshed) and "Refund $120" not in message_text(refreshed)

    # The thread and the parent show the same outcome as a click in the thread would.
    services.outbox.drain()
    parent, thread = escalation_messages(stub, "C0REFUNDS", first)
    assert buttons(thread) == [] and "Approved" in message_text(parent) and "<@U0REFUNDER1>" in message_text(thread)
    assert status_of(services, second) == "pending"

    # A click on the stale home button changes nothing and says so.
    assert slack.interaction(home_payload("U0REFUNDER2", "aop_approve", value, view)).status_code == 200
    dm = wait_for(lambda: [c for c in stub.calls_to("chat.postMessage") if c.args["channel"] == "U0REFUNDER2"],
                  what="already-decided note")
    assert "Already approved by <@U0REFUNDER1>" in dm[0].args["text"]
    assert stub.violations == []


def test_app_home_for_someone_with_nothing(services, stub, slack):
    slack.event({"type": "app_home_opened", "user": "U0NOBODY", "tab": "home", "channel": "D2"})
    view = wait_for(lambda: published_to(stub, "U0NOBODY"), what="App Home publish")[0]
    assert "Nothing is waiting on you" in message_text(view) and "You hold no role" in message_text(view)
