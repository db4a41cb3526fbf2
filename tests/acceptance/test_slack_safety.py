"""Acceptance (issue 2, points 5 and 6): hostile agent text is inert in Slack and fits Block Kit;
forged or stale Slack requests are refused and change nothing."""

from __future__ import annotations

import json
import time

import pytest

from bot.sandbox.records import message_text
from tests.conftest import wait_for
from tests.helpers import buttons, click, escalation_messages
from tests.slack_requests import block_action

HOSTILE = "<!channel> <!here|here> <@U0EVIL> <https://evil.example|click me> & <b>bold</b> > quote"


def all_text_sent(stub) -> str:
    parts = []
    for c in stub.calls:
        if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            parts.append(c.args.get("text", ""))
            parts.append(json.dumps(c.args.get("blocks", [])))
    return "\n".join(parts)


def test_hostile_and_huge_agent_text_reaches_slack_escaped_and_within_limits(services, stub, slack, agent):
    huge = ("A" * 1000 + " <!channel> & ") * 50  # ~50 KB with mentions sprinkled through
    resp = agent.signal(
        process_id="refunds",
        model=HOSTILE,
        reason=HOSTILE[:200],
        message=huge,
        inputs={HOSTILE: HOSTILE, **{f"k{i}": "v" * 900 for i in range(60)}},
        action={"summary": HOSTILE + " " + huge, "tools": ["billing.refund"], "params": {"note": HOSTILE}},
        policy_checks=[{"name": f"check_{i} {HOSTILE}", "passed": False, "detail": huge[:3000]} for i in range(100)],
        trace_id=HOSTILE[:200],
    )
    assert resp.status_code == 201, resp.text
    esc_id = resp.json()["id"]
    services.outbox.drain()

    assert stub.violations == []  # nothing Slack would refuse, no mass mention, no raw < or >
    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    sent = all_text_sent(stub)
    assert "<!channel>" not in sent and "<!here" not in sent and "<@U0EVIL>" not in sent
    assert "<https://evil.example" not in sent
    assert "&lt;!channel&gt;" in message_text(parent)
    assert "&lt;@U0EVIL&gt;" in message_text(thread)
    assert "&amp; &lt;b&gt;bold&lt;/b&gt; &gt; quote" in message_text(parent)
    assert buttons(thread) == ["aop_approve", "aop_reject", "aop_ack"]  # the decision survives any input
    for msg in (parent, thread):
        assert len(msg.text) <= 3000 and len(msg.blocks) <= 50

    # And after the decision, the updated messages are just as safe.
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="approval")
    services.outbox.drain()
    assert stub.violations == []
    assert "<@U0EVIL>" not in all_text_sent(stub)


def test_a_forged_signature_gets_401_and_changes_nothing(services, stub, slack, agent):
    resp = agent.signal(process_id="refunds", action={"summary": "Refund $5", "tools": ["billing.refund"]})
    esc_id = resp.json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    value = json.dumps({"e": esc_id})
    payload = block_action("U0ESCOWNER", "aop_approve", value, thread.channel,
                           {"ts": thread.ts, "thread_ts": thread.thread_ts, "blocks": thread.blocks})
    calls_before = len(stub.calls)

    forged = slack.interaction(payload, secret="not-the-signing-secret")
    stale = slack.interaction(payload, timestamp=int(time.time()) - 6 * 60)
    future = slack.interaction(payload, timestamp=int(time.time()) + 6 * 60)
    assert (forged.status_code, stale.status_code, future.status_code) == (401, 401, 401)

    time.sleep(0.3)  # give a wrongly-accepted request the chance to act, so the check below can fail
    assert agent.get(esc_id)["status"] == "pending"
    assert len(stub.calls) == calls_before

    # The same click, properly signed within the window, is acted on.
    assert slack.interaction(payload).status_code == 200
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="approval")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_click_while_the_database_is_down_is_acked_and_told_to_try_again(services, stub, slack, agent, db_url):
    from pathlib import Path

    from tests.helpers import ephemerals_to

    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    path = Path(db_url.removeprefix("sqlite:///"))
    path.rename(path.with_suffix(".away"))
    path.mkdir()  # nothing can open the database now: an outage
    services.db.engine.dispose()
    try:
        resp = click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
        assert resp.status_code == 200  # acked, not "unhandled request"
        told = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="a private note")
        assert "did not go through" in told[0] and "try again" in told[0]
    finally:
        path.rmdir()
        path.with_suffix(".away").rename(path)
        services.db.engine.dispose()
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)  # the button still works
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="the approval after the outage")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_reject_submitted_while_the_database_is_down_keeps_the_modal_and_its_reason(services, stub, slack, agent,
                                                                                       db_url):
    from pathlib import Path

    from bot.surfaces import blocks
    from tests.slack_requests import view_submission

    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    meta = blocks.RejectModalMeta(e=esc_id, c="C0REFUNDS").model_dump_json()
    values = {blocks.REASON_BLOCK: {blocks.REASON_INPUT: {"type": "plain_text_input", "value": "wrong amount"}}}
    path = Path(db_url.removeprefix("sqlite:///"))
    path.rename(path.with_suffix(".away"))
    path.mkdir()
    services.db.engine.dispose()
    try:
        resp = slack.interaction(view_submission("U0ESCOWNER", blocks.REJECT_MODAL, meta, values))
    finally:
        path.rmdir()
        path.with_suffix(".away").rename(path)
        services.db.engine.dispose()
    assert resp.status_code == 200
    body = resp.json()  # the modal stays open (the reason typed is not lost) and says why
    assert body["response_action"] == "errors" and "submit again" in body["errors"][blocks.REASON_BLOCK]
    assert agent.get(esc_id)["status"] == "pending"
    again = slack.interaction(view_submission("U0ESCOWNER", blocks.REJECT_MODAL, meta, values))
    assert again.status_code == 200
    wait_for(lambda: agent.get(esc_id)["status"] == "rejected", what="the rejection, submitted again")
