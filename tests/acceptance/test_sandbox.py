"""The built-in sandbox (issue 9), in process over real HTTP: the bot posts to its own Slack-compatible
Web API, and a person's actions on the page become signed requests to /slack/events."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.domain.models import SlackInboxItem
from bot.ops import clock
from bot.ops.app import build_services, create_http_app
from bot.ops.config import Settings
from bot.sandbox import embed
from bot.sandbox.records import message_text
from tests.conftest import ROOT, RunningServer, bound_socket, wait_for

EXAMPLE = ROOT / "aops.example.yml"
TIER2 = "support_refunds_tier2_v3"
REFUNDS = "C0REFUNDS"


class Page:
    """What the /sandbox page does, over the same endpoints."""

    def __init__(self, url: str, services):
        self.url, self.services = url, services
        self.http = httpx.Client(base_url=url, timeout=30)
        self.ws = services.sandbox.ws

    def sample(self, key: str) -> dict:
        resp = self.http.post("/sandbox/sample", json={"sample": key})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def state(self, viewer: str) -> dict:
        return self.http.get("/sandbox/state", params={"as": viewer}).json()

    def act(self, viewer: str, **body) -> dict:
        resp = self.http.post("/sandbox/act", json={"as": viewer, **body})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def click(self, viewer: str, msg: dict, channel: str, action_id: str) -> dict:
        button = next(e for b in msg["blocks"] if b.get("type") == "actions" for e in b["elements"]
                      if e["action_id"] == action_id)
        return self.act(viewer, type="button", channel=channel, ts=msg["ts"], action_id=action_id,
                        value=button["value"])

    def deliver(self) -> None:
        """Deliver what the bot queued, once every acked click has been applied (they are applied
        after the ack, on a thread of their own: on a busy machine that takes a moment)."""
        def applied() -> bool:
            with self.services.db.transaction() as s:
                return s.scalar(select(func.count()).select_from(SlackInboxItem)) == 0
        wait_for(applied, what="acked clicks to be applied")
        self.services.outbox.drain()

    def ephemerals(self, viewer: str, channel: str, n: int = 1) -> list[dict]:
        """The private replies the viewer sees (they come after the ack: wait for them)."""
        def mine():
            got = [m for m in self.state(viewer)["messages"].get(channel, []) if m["ephemeral"]]
            return got if len(got) >= n else None
        return wait_for(mine, what=f"{n} private repl(ies) to {viewer}")

    def status(self, viewer: str, esc_id: str, expected: str) -> dict:
        def seen():
            agent = next(a for a in self.state(viewer)["agent"] if a["id"] == esc_id)
            return agent if agent["poll"]["status"] == expected else None
        return wait_for(seen, what=f"{esc_id} {expected}")


def thread_of(state: dict, channel: str, esc_id: str) -> tuple[dict, dict]:
    """(parent, thread card) of one escalation as the viewer sees them."""
    msgs = [m for m in state["messages"].get(channel, []) if not m["ephemeral"]]
    parent = next(m for m in msgs if m["thread_ts"] is None and esc_id in str(m["blocks"]))
    card = next(m for m in msgs if m["thread_ts"] == parent["ts"] and any(
        b.get("type") == "actions" for b in m["blocks"]) or (m["thread_ts"] == parent["ts"] and esc_id in str(m)))
    return parent, card


@pytest.fixture
def sandbox_page(db_url, db, tmp_path) -> Iterator[Page]:
    registry = tmp_path / "aops.yml"
    shutil.copy(EXAMPLE, registry)
    sock = bound_socket()
    settings = embed.sandbox_settings(Settings(database_url=db_url, aop_registry=str(registry),
                                               port=sock.getsockname()[1]))
    services = build_services(settings, db, sandbox=True)
    with RunningServer(create_http_app(services), sock) as running:
        page = Page(running.url, services)
        yield page
        page.http.close()


def test_the_whole_loop_in_the_sandbox(sandbox_page):
    page = sandbox_page
    esc_id = page.sample("tier2")["body"]["id"]
    page.deliver()
    owner = page.state("U0ESCOWNER")
    parent, card = thread_of(owner, REFUNDS, esc_id)
    assert "Refund $120 on ticket 123" in message_text(parent)
    assert any("Refund $120" in message_text(m) for m in owner["messages"]["D0ESCOWNER"])  # the page's DM

    page.click("U0STRANGER", card, REFUNDS, "aop_approve")
    refusal = page.ephemerals("U0STRANGER", REFUNDS)
    assert "can't decide" in refusal[-1]["text"]
    assert not [m for m in page.state("U0ESCOWNER")["messages"][REFUNDS] if m["ephemeral"]]  # theirs only

    page.click("U0AGENT", card, REFUNDS, "aop_approve")  # the agent's own identity never decides
    assert page.state("U0ESCOWNER")["agent"][0]["poll"]["status"] == "pending"

    page.click("U0REFUNDERS1", card, REFUNDS, "aop_approve")  # a member of the approvers' group
    page.status("U0ESCOWNER", esc_id, "approved")  # applied after the ack: then render it
    page.deliver()
    after = page.state("U0ESCOWNER")
    parent, card = thread_of(after, REFUNDS, esc_id)
    assert parent["edited"] and "Approved" in message_text(parent)
    assert not any(b.get("type") == "actions" for b in card["blocks"])  # the buttons are gone
    agent = next(a for a in after["agent"] if a["id"] == esc_id)
    assert agent["poll"]["status"] == "approved" and agent["poll"]["decided_by"] == "U0REFUNDERS1"
    assert agent["changelog"]["decision"] == "approved" and agent["changelog"]["escalation_id"] == esc_id


def test_reject_through_the_modal_needs_a_reason(sandbox_page):
    page = sandbox_page
    esc_id = page.sample("tier2")["body"]["id"]
    page.deliver()
    _, card = thread_of(page.state("U0ESCOWNER"), REFUNDS, esc_id)
    page.click("U0ESCOWNER", card, REFUNDS, "aop_reject")
    modal = page.state("U0ESCOWNER")["modal"]
    assert modal and modal["title"] == "Reject escalation"
    assert page.state("U0STRANGER")["modal"] is None  # a modal is the clicker's own

    blank = page.act("U0ESCOWNER", type="view_submission", view_id=modal["id"],
                     values={"reason": {"reason_input": {"type": "plain_text_input", "value": "  "}}})
    assert blank["errors"] == {"reason": "A reason is required to reject."}
    assert page.state("U0ESCOWNER")["modal"]["errors"]  # still open, showing why

    page.act("U0ESCOWNER", type="view_submission", view_id=modal["id"],
             values={"reason": {"reason_input": {"type": "plain_text_input", "value": "Order was delivered"}}})
    page.status("U0ESCOWNER", esc_id, "rejected")  # applied after the ack
    page.deliver()
    state = page.state("U0ESCOWNER")
    assert state["modal"] is None
    agent = next(a for a in state["agent"] if a["id"] == esc_id)
    assert agent["poll"]["status"] == "rejected" and agent["poll"]["reason"] == "Order was delivered"


def test_tier4_needs_two_people_one_from_compliance(sandbox_page):
    page = sandbox_page
    esc_id = page.sample("tier4")["body"]["id"]
    page.deliver()
    _, card = thread_of(page.state("U0KYCOWNER"), "C0KYC", esc_id)
    page.click("U0KYCOWNER", card, "C0KYC", "aop_approve")
    page.deliver()
    mine = page.state("U0KYCOWNER")
    assert any("1 of 2" in m["text"] for m in page.ephemerals("U0KYCOWNER", "C0KYC"))
    assert next(a for a in mine["agent"] if a["id"] == esc_id)["poll"]["status"] == "pending"
    _, card = thread_of(mine, "C0KYC", esc_id)
    page.click("U0COMPLIANCE1", card, "C0KYC", "aop_approve")
    page.deliver()
    page.status("U0KYCOWNER", esc_id, "approved")


def test_aop_commands_answer_in_the_page(sandbox_page):
    page = sandbox_page
    page.sample("tier2")
    page.deliver()
    page.act("U0ESCOWNER", type="command", channel=REFUNDS, text="/aop pending")
    page.act("U0ESCOWNER", type="command", channel=REFUNDS, text="who support_refunds_tier2_v3")
    answers = [message_text(m) or m["text"] for m in page.ephemerals("U0ESCOWNER", REFUNDS, 2)]
    assert any("1 open escalation" in a for a in answers)
    assert any("escowner" in a.lower() or "<@U0ESCOWNER>" in a for a in answers[1:])
    assert not [m for m in page.state("U0PM")["messages"][REFUNDS] if m["ephemeral"]]


def test_app_home_opens_and_its_buttons_decide(sandbox_page):
    page = sandbox_page
    esc_id = page.sample("tier2")["body"]["id"]
    page.deliver()
    page.act("U0ESCOWNER", type="home_opened")
    home = wait_for(lambda: page.state("U0ESCOWNER")["home"], what="App Home published")
    assert home and "Refund $120" in message_text(home)
    button = next(e for b in home["blocks"] if b.get("type") == "actions" for e in b["elements"]
                  if e["action_id"] == "aop_approve")
    page.act("U0ESCOWNER", type="button", view="home", action_id="aop_approve", value=button["value"],
             block_id="home")
    page.status("U0ESCOWNER", esc_id, "approved")


def test_a_struggling_slack_loses_nothing_and_keeps_order(sandbox_page):
    """50 signals while the Web API answers 429 (Retry-After) and 500s: every one paged, in order, once."""
    page = sandbox_page
    page.ws.struggling = True
    ids = [page.sample("tier2")["body"]["id"] for _ in range(50)]
    # Wait out Retry-After and the backoff by travelling in time, not sleeping (asyncio keeps real time).
    with freeze_time(clock.now(), real_asyncio=True) as frozen:
        for _ in range(500):
            page.deliver()
            if page.services.outbox.backlog()[0] == 0:
                break
            frozen.tick(timedelta(seconds=2))
        assert page.services.outbox.backlog()[0] == 0, "deliveries still pending"
    refused = [c for c in page.ws.calls if not c.ok and c.status in (429, 500)]
    assert len(refused) >= 10  # Slack really did struggle
    parents = [m for m in page.ws.channel_messages(REFUNDS) if m.thread_ts is None]
    assert [next(i for i in ids if i in str(m.blocks)) for m in parents] == ids  # each once, in order
    threads = [m for m in page.ws.channel_messages(REFUNDS) if m.thread_ts is not None]
    assert len(threads) == 50 and page.ws.violations == []


def test_sandbox_is_off_with_slack_credentials_or_when_exposed():
    assert embed.wanted(Settings())
    assert not embed.wanted(Settings(slack_bot_token="xoxb-real", slack_signing_secret="s3cr3t-value"))
    assert not embed.wanted(Settings(host="0.0.0.0"))  # noqa: S104 - anyone could act as anyone
    assert embed.wanted(Settings(host="0.0.0.0", aop_sandbox=True))  # noqa: S104
    assert not embed.wanted(Settings(aop_sandbox=False))
    assert embed.local_base(Settings(host="0.0.0.0", port=3100)) == "http://127.0.0.1:3100"  # noqa: S104


def test_sandbox_routes_answer_404_with_slack_credentials(server):
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/sandbox").status_code == 404
        assert http.post("/sandbox/api/chat.postMessage", data={"channel": "C1"}).status_code == 404


def test_only_the_page_itself_can_act_in_the_sandbox(sandbox_page):
    """A web page elsewhere must not click Approve for you: a cross-site form post (not JSON) and a
    DNS-rebinding request (a Host this bot is not served under) are refused; nothing happens."""
    esc_id = sandbox_page.sample("tier2")["body"]["id"]
    sandbox_page.deliver()
    parent, card = thread_of(sandbox_page.state("U0ESCOWNER"), REFUNDS, esc_id)
    button = next(e for b in card["blocks"] if b.get("type") == "actions" for e in b["elements"]
                  if e["action_id"] == "aop_approve")
    click = {"as": "U0REFUNDERS1", "type": "button", "channel": REFUNDS, "ts": card["ts"],
             "action_id": "aop_approve", "value": button["value"]}
    form = sandbox_page.http.post("/sandbox/act", content=json.dumps(click),
                                  headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    rebound = sandbox_page.http.post("/sandbox/act", json=click, headers={"Host": "evil.example:3000"})
    assert rebound.status_code == 403
    assert sandbox_page.http.get("/sandbox/state", headers={"Host": "evil.example"}).status_code == 403
    assert sandbox_page.state("U0ESCOWNER")["agent"][0]["poll"]["status"] == "pending"
    assert sandbox_page.http.post("/sandbox/act", json=click).status_code == 200  # the page itself may
    sandbox_page.status("U0ESCOWNER", esc_id, "approved")
