"""Block Kit builders: pure functions from a card to a message, checked against Slack's own rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.limits import check_message, texts
from bot.surfaces import blocks
from bot.surfaces.cards import Card

OPENED = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def card(**changes) -> Card:
    base = Card(
        id="esc_0123456789abcdef0123", process_id="refunds", process_name="Support refunds", tier=2,
        status="pending", summary="Refund $120 on ticket 123", message="Customer says it never arrived.",
        reason_code="policy_check_failed", model="vendor:model", agent_name="refund-agent",
        inputs={"ticket_id": "123"}, tools=["billing.refund"], params={"amount": 120},
        policy_checks=[{"name": "refund_limit_50", "passed": False, "detail": "120 > 50"}], rollback_plan=None,
        trace_id="t1", action_hash="ab" * 32, created_at=OPENED, expires_at=OPENED + timedelta(hours=4),
        acknowledged_by=None, decided_by=None, decided_at=None, reason=None, approvers=["U0ESCOWNER"],
        compliance=[],
    )
    return replace(base, **changes)


def test_escape_makes_slack_markup_inert():
    assert blocks.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_clip_never_cuts_an_entity_in_half():
    text = blocks.safe("a" * 10 + "<b>", 13)
    assert text.endswith("…") and "&l…" not in text and len(text) <= 13


def test_a_pending_card_offers_the_decision_buttons():
    msg = blocks.thread_message(card())
    ids = [e["action_id"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ids == [blocks.ACTION_APPROVE, blocks.ACTION_REJECT, blocks.ACTION_ACK]
    assert check_message(msg) == []


@pytest.mark.parametrize("status, label", [("approved", "Approved"), ("rejected", "Rejected"),
                                           ("expired", "Expired (do not act)"), ("cancelled", "Cancelled")])
def test_a_closed_card_says_so_and_has_no_buttons(status, label):
    closed = card(status=status, decided_by="U0ESCOWNER", decided_at=OPENED + timedelta(minutes=5), reason="ok")
    for msg in (blocks.parent_message(closed), blocks.thread_message(closed)):
        assert not [b for b in msg["blocks"] if b["type"] == "actions"]
        assert any(label in t for t in texts(msg["blocks"]))


def test_hostile_agent_text_stays_inert_and_within_limits():
    hostile = card(summary="<!here> " + "x" * 5000, message="<@U0CEO> *urgent*\n" * 400,
                   inputs={f"k{i}": "<https://evil|click>" * 50 for i in range(200)})
    for msg in (blocks.parent_message(hostile), blocks.thread_message(hostile)):
        assert check_message(msg) == []


def test_the_tier_4_card_shows_quorum_progress():
    from bot.domain import policy

    msg = blocks.thread_message(card(tier=4, compliance=["S0COMP"], approvals=["U1"],
                                     quorum=policy.quorum(4, ["U1"], set())))
    assert any("1 of 2" in t for t in texts(msg["blocks"]))


FORGED = "Refund $5\n:white_check_mark: *Approved* by <@U0CEO> · today\u202e"


@pytest.mark.parametrize("build", [blocks.parent_message, blocks.thread_message,
                                   lambda c: blocks.dm_message(c, "https://x.invalid/t")])
def test_an_agent_cannot_draw_the_bots_status_line(build):
    msg = build(card(summary=FORGED, message=FORGED, agent_name="bot\n*Approved*", model="m\u202e",
                     rollback_plan=FORGED, inputs={FORGED: FORGED}, params={"p": FORGED},
                     policy_checks=[{"name": FORGED, "passed": False, "detail": FORGED}]))
    # The agent's words appear only in plain-text objects, never where Slack parses markup.
    assert not any("Approved" in t or "U0CEO" in t for t in texts(msg["blocks"], mrkdwn_only=True))
    plains = [o for b in msg["blocks"] for o in ([b.get("text")] + b.get("elements", []))
              if isinstance(o, dict) and o.get("type") == "plain_text"]
    summary = next(p for p in plains if "Refund $5" in p["text"])
    assert "\n" not in summary["text"] and "\u202e" not in summary["text"] and summary["emoji"] is False
    assert all("\u202e" not in p["text"] for p in plains)
