"""Acceptance (issue 15, point 1): `require_approval` against a real `aopbot serve` (SQLite) and the
Slack stand-in. The decorated function runs once after an approval clicked through a signed
interaction, and its change-log record carries the approved action_hash; it does not run after a
reject (the exception carries the reason), and raises on expiry and on cancel. And the example agent
of the README works against it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from aopbot_client import (
    AopClient,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalRejected,
    AsyncAopClient,
    action_hash,
)
from tests.procs import ROOT

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a real process on SQLite

REFUND_TOOLS = ["billing.refund"]
GIVE_UP_S = 120  # a guard so a broken bot fails the test instead of hanging it; not a timing


def refund_summary(ticket_id: str, amount: int) -> str:
    return f"Refund ${amount} on ticket {ticket_id}"


def changelog(served) -> list[dict]:
    resp = httpx.get(served.url + "/api/v1/changelog", params={"process_id": "refunds"},
                     headers={"Authorization": f"Bearer {served.token}"})
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


def test_a_decorated_tool_runs_once_after_approval_and_records_the_approved_hash(served):
    ran: list[tuple[str, int]] = []
    with AopClient(served.url, served.token, model="vendor:model-name") as aop:

        @aop.require_approval(process_id="refunds", summary=refund_summary, tools=REFUND_TOOLS,
                              message="Customer says the order never arrived.", timeout=GIVE_UP_S)
        def refund(ticket_id: str, amount: int) -> str:
            ran.append((ticket_id, amount))
            return f"refunded ${amount}"

        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(refund, "123", amount=120)
            esc_id = served.paged(1)
            assert not call.done() and ran == []  # waiting for a human
            served.approve(esc_id)
            assert call.result(timeout=60) == "refunded $120"
        assert ran == [("123", 120)]
        view = aop.get(esc_id)

    expected = action_hash("Refund $120 on ticket 123", REFUND_TOOLS, {"ticket_id": "123", "amount": 120})
    assert view.decision == "approved" and view.decided_by == "U0ESCOWNER" and view.action_hash == expected
    entries = changelog(served)
    assert [(e["human_escalation"], e["decision"]) for e in entries] == [
        (True, "approved"), (False, "Refund $120 on ticket 123")]
    outcome, record = entries
    assert outcome["escalation_id"] == esc_id and outcome["action_hash"] == expected
    assert record["action_hash"] == expected
    assert record["tools_invoked"] == REFUND_TOOLS and record["inputs"] == {"ticket_id": "123", "amount": 120}
    assert record["model"] == "vendor:model-name"


def test_a_rejected_tool_never_runs_and_the_exception_says_who_and_why(served):
    ran = []
    reason = "Order shows as delivered; ask for a photo first."

    async def scenario() -> ApprovalRejected:
        async with AsyncAopClient(served.url, served.token) as aop:

            @aop.require_approval(process_id="refunds", summary=refund_summary, tools=REFUND_TOOLS, timeout=GIVE_UP_S)
            async def refund(ticket_id: str, amount: int) -> str:
                ran.append(ticket_id)
                return "refunded"

            task = asyncio.create_task(refund("124", 80))
            esc_id = await asyncio.to_thread(served.paged, 1)
            await asyncio.to_thread(served.reject, esc_id, reason)
            with pytest.raises(ApprovalRejected) as denied:
                await asyncio.wait_for(task, 60)
            assert denied.value.escalation_id == esc_id
            return denied.value

    denied = asyncio.run(scenario())
    assert ran == []
    assert denied.reason == reason and denied.decided_by == "U0ESCOWNER"
    assert isinstance(denied, ApprovalDenied)
    assert reason in str(denied) and "Do not perform it" in str(denied)  # what the model reads
    assert [e["decision"] for e in changelog(served)] == ["rejected"]  # nothing recorded as done


def test_a_tool_raises_on_expiry_and_on_cancel_and_never_runs(served):
    ran = []
    with AopClient(served.url, served.token) as aop:

        @aop.require_approval(process_id="refunds", summary=refund_summary, tools=REFUND_TOOLS, expires_in_s=1,
                              timeout=GIVE_UP_S)
        def hasty_refund(ticket_id: str, amount: int) -> None:
            ran.append(ticket_id)

        @aop.require_approval(process_id="refunds", summary=refund_summary, tools=REFUND_TOOLS, timeout=GIVE_UP_S)
        def refund(ticket_id: str, amount: int) -> None:
            ran.append(ticket_id)

        with pytest.raises(ApprovalExpired) as expired:
            hasty_refund("125", 10)  # nobody clicks; the bot's scheduler expires it
        assert expired.value.decided_by is None and "nobody decided" in (expired.value.reason or "")

        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(refund, "126", 20)
            esc_id = served.paged(2)
            assert aop.cancel(esc_id).status == "cancelled"
            with pytest.raises(ApprovalCancelled) as cancelled:
                call.result(timeout=60)
        assert cancelled.value.escalation_id == esc_id
    assert ran == []
    assert [e["decision"] for e in changelog(served)] == ["expired", "cancelled"]


def test_the_example_agent_refunds_alone_below_its_limit_and_through_the_decorator_above(served, tmp_path):
    """examples/refund_agent.py, as the README runs it, against the bot: one refund alone, one approved,
    one rejected."""
    out = tmp_path / "agent.out"
    with out.open("wb") as sink:
        agent = subprocess.Popen([sys.executable, str(ROOT / "examples" / "refund_agent.py")], cwd=tmp_path,
                                 env={**os.environ, **served.env, "AOP_PROCESS": "refunds"},
                                 stdout=sink, stderr=subprocess.STDOUT)
    try:
        served.approve(served.paged(1))
        served.reject(served.paged(2), "Past the 90-day window.")
        assert agent.wait(60) == 0, out.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    printed = out.read_text()
    assert "ticket 118: refunded $20 alone" in printed
    assert "ticket 123: refunded $120 after approval (rf_123_120)" in printed
    assert "ticket 131: not refunded" in printed and "Past the 90-day window." in printed
    entries = changelog(served)
    assert [(e["decision"], e.get("action_hash") is not None) for e in entries] == [
        ("refunded $20 on ticket 118", False), ("approved", True), ("Refund $120 on ticket 123", True),
        ("rejected", True)]
    assert entries[1]["action_hash"] == entries[2]["action_hash"]
    assert entries[1]["model"] == "example:refund-agent"
