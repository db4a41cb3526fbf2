"""Acceptance (issue 14): sampling QA of recorded agent actions, reviewed in Slack, and the error
rate that comes of it. Through the agent API over HTTP and signed Slack requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.domain.models import ChangelogEntry, QaReview
from bot.sandbox.records import Message, buttons, message_text
from bot.surfaces import qa_blocks
from tests.conftest import REGISTRY_FIXTURE, wait_for
from tests.helpers import click, ephemerals_to
from tests.procs import aopbot
from tests.slack_requests import view_submission
from tests.webhooks import verify

EXTRA = """
  - id: checked
    name: Checked refunds
    tier: 2
    channel: C0CHECKED
    capability: act
    allowed_tools: [billing.refund]
    blast_radius: A wrong refund
    raci: {accountable: U0DRI, escalation: U0ESCOWNER}
    redact: [inputs.email]
    qa: {sample_rate: 1, reviewers: [U0ESCOWNER, S0REFUNDERS]}
  - id: sampled
    name: Sampled refunds
    tier: 2
    channel: C0SAMPLED
    capability: act
    allowed_tools: [billing.refund]
    blast_radius: A wrong refund
    raci: {accountable: U0DRI, escalation: U0ESCOWNER}
    qa: {sample_rate: 0.05}
"""


@pytest.fixture
def registry_path(tmp_path) -> Path:
    dst = tmp_path / "aops.yml"
    shutil.copy(REGISTRY_FIXTURE, dst)
    dst.write_text(dst.read_text() + EXTRA)
    return dst


def record(agent, i: int, process_id: str = "checked", **body):
    body = {"process_id": process_id, "model": "vendor:model-a", "decision": f"refunded ticket {i}",
            "timestamp": f"2026-11-02T10:{i // 60 % 60:02d}:{i % 60:02d}Z", "inputs": {"ticket": str(i)},
            "tools_invoked": ["billing.refund"], "policy_checks": ["refund_limit_500"], **body}
    resp = agent.http.post("/api/v1/changelog", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def cards(stub, channel: str) -> list[Message]:
    return [m for m in stub.channel_messages(channel) if '"aop_qa_' in json.dumps(m.blocks)
            or any('"aop_qa_' in json.dumps(h) for h in m.history)]


def test_a_sampled_action_is_reviewed_once_in_slack_and_the_agent_hears_the_verdict(
        services, stub, slack, make_agent, receivers, db_url):
    agent = make_agent(processes=("checked",))
    hook = receivers()
    stored = record(agent, 1, callback_url=hook.url, inputs={"ticket": "1", "email": "a@b.c <!channel>"},
                    decision="refunded <@U0DRI> *bold*")
    services.outbox.drain()
    [card] = cards(stub, "C0CHECKED")
    text = message_text(card)
    assert "QA review" in text and "Checked refunds" in text and "[redacted]" in text and "a@b.c" not in text
    assert "<@U0DRI>" not in json.dumps(card.blocks) and "<!channel>" not in json.dumps(card.blocks)
    assert buttons(card) == [qa_blocks.ACTION_QA_OK, qa_blocks.ACTION_QA_WRONG]

    click(slack, stub, "U0PM", qa_blocks.ACTION_QA_WRONG, card)  # not a reviewer: told who is, no modal
    assert "Only <@U0ESCOWNER>, <!subteam^S0REFUNDERS> can" in wait_for(lambda: ephemerals_to(stub, "U0PM"))[0]

    click(slack, stub, "U0REFUNDER1", qa_blocks.ACTION_QA_WRONG, card)  # a group member may review
    view = wait_for(lambda: stub.calls_to("views.open"), what="the Wrong modal")[0].args["view"]
    assert view["callback_id"] == qa_blocks.QA_WRONG_MODAL
    note = {qa_blocks.NOTE_BLOCK: {qa_blocks.NOTE_INPUT: {"type": "plain_text_input", "value": "  "}}}
    blank = slack.interaction(view_submission("U0REFUNDER1", view["callback_id"], view["private_metadata"], note))
    assert blank.json()["response_action"] == "errors"
    note[qa_blocks.NOTE_BLOCK][qa_blocks.NOTE_INPUT]["value"] = "Ticket 1 was already refunded by hand"
    resp = slack.interaction(view_submission("U0REFUNDER1", view["callback_id"], view["private_metadata"], note))
    assert resp.status_code == 200 and "errors" not in resp.text

    def reviewed():
        with services.db.transaction() as s:
            return s.scalar(select(QaReview.status).where(QaReview.entry_seq == stored["seq"])) != "pending"
    wait_for(reviewed, what="the review")

    click(slack, stub, "U0ESCOWNER", qa_blocks.ACTION_QA_OK, card)  # second click: told who reviewed
    told = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="the second reviewer's reply")[0]
    assert "Already reviewed by <@U0REFUNDER1>" in told and "*Wrong*" in told

    services.outbox.drain()
    [card] = cards(stub, "C0CHECKED")
    text = message_text(card)
    assert "Wrong" in text and "Ticket 1 was already refunded by hand" in text and buttons(card) == []

    with services.db.transaction() as s:
        entries = [json.loads(b) for b in s.scalars(select(ChangelogEntry.body).where(
            ChangelogEntry.process_id == "checked").order_by(ChangelogEntry.seq))]
    assert [e["decision"] for e in entries] == ["refunded <@U0DRI> *bold*", "qa_wrong"]
    review = entries[1]
    assert review["kind"] == "qa" and review["human_escalation"] is True and review["decided_by"] == "U0REFUNDER1"
    assert (review["reviewed_seq"], review["reviewed_hash"]) == (stored["seq"], stored["hash"])
    assert review["reason"] == "Ticket 1 was already refunded by hand" and review["model"] == "vendor:model-a"
    assert "callback_url" not in entries[0]  # where the verdict goes is not part of the log

    services.callbacks.drain()
    [(body, ts, sig)] = hook.received
    assert verify(agent.callback_secret, body, ts, sig)
    verdict = json.loads(body)
    assert verdict["event"] == "qa_review" and verdict["verdict"] == "wrong" and verdict["decision"] == "qa_wrong"
    assert verdict["entry"]["seq"] == stored["seq"] and verdict["entry"]["hash"] == stored["hash"]
    assert verdict["note"] == "Ticket 1 was already refunded by hand" and verdict["reviewed_by"] == "U0REFUNDER1"
    assert verdict["review"]["seq"] == review["seq"]

    verified = aopbot("changelog", "verify", env={"DATABASE_URL": db_url})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert stub.violations == []


def test_a_callback_url_on_a_record_is_checked_like_an_escalations(make_agent):
    agent = make_agent(processes=("checked",))
    for url, says in (("http://example.com/hook", "must be https://"), ("https://u:p@example.com/", "credentials"),
                      ("https://10.0.0.1/hook", "non-public"), ("ftp://example.com/", "string should match")):
        resp = agent.http.post("/api/v1/changelog", json={"process_id": "checked", "model": "m", "decision": "d",
                                                          "callback_url": url})
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "callback_url", resp.text
        assert says in resp.text.lower(), resp.text
    assert agent.http.get("/api/v1/changelog", params={"process_id": "checked"}).text == ""
