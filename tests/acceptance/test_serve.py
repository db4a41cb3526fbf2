"""`aopbot serve` as a real process: its scheduler pages on its own, and in Socket Mode (SLACK_APP_TOKEN)
the same listeners decide from envelopes pushed over a WebSocket."""

from __future__ import annotations

import json

import httpx
import pytest

from bot.domain import tokens
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, wait_for
from tests.helpers import buttons, escalation_messages
from tests.procs import ServeProcess
from tests.slack_requests import block_action
from tests.slack_stub.socket_mode import SocketModeStub


@pytest.fixture
def socket_stub(stub):
    sm = SocketModeStub()
    stub.socket_mode = sm
    yield sm
    sm.stop()


def approve_over_socket_mode(stub, socket_stub, http, esc_id: str) -> None:
    """Wait for the bot's own scheduler to page (nobody drains the outbox for it here), then approve
    through a Socket Mode envelope and see it acked and applied."""
    wait_for(lambda: len([m for m in stub.channel_messages("C0REFUNDS") if m.thread_ts]) == 1,
             what="the page from the scheduler")
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    payload = block_action("U0ESCOWNER", "aop_approve", json.dumps({"e": esc_id}), thread.channel,
                           {"ts": thread.ts, "thread_ts": thread.thread_ts, "blocks": thread.blocks})
    envelope = socket_stub.push("interactive", payload)
    wait_for(lambda: envelope in socket_stub.acks, timeout=60, what="the envelope ack")
    wait_for(lambda: http.get(f"/api/v1/escalations/{esc_id}").json()["status"] == "approved",
             what="approval over Socket Mode")


def test_serve_pages_and_decides_over_socket_mode(db, db_url, stub, socket_stub, registry_path, tmp_path):
    with db.transaction() as s:
        new = tokens.create(s, ["refunds"], "agent")
    bot = ServeProcess({
        "DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": "xapp-1-test", "SLACK_API_URL": stub.url,
        "AOP_TICK_SECONDS": "0.2", "AOP_LOG_LEVEL": "DEBUG",  # libraries print headers at DEBUG
    }, tmp_path / "serve.log").start()
    try:
        wait_for(lambda: socket_stub.connected, what="the Socket Mode connection")
        http = httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"})
        esc_id = http.post("/api/v1/escalations", json={
            "process_id": "refunds", "action": {"summary": "Refund $40", "tools": ["billing.refund"]},
            "trace_id": "4bf92f3577b34da6",
        }).json()["id"]

        approve_over_socket_mode(stub, socket_stub, http, esc_id)
        wait_for(lambda: buttons(escalation_messages(stub, "C0REFUNDS", esc_id)[1]) == [],
                 what="the thread card updated by the scheduler")
        assert http.get("/readyz").json() == {"status": "ready"}
        assert "aopbot_outbox_backlog" in http.get("/metrics").text
    finally:
        code = bot.stop()
    assert code == 0, bot.log()
    log = bot.log_path.read_text()
    assert "Authorization" in log  # slack_sdk did print its request headers…
    for secret in (BOT_TOKEN, SIGNING_SECRET, "xapp-1-test", new.token, new.callback_secret):
        assert secret not in log  # …and no secret reached the log
    about = [json.loads(line) for line in log.splitlines() if esc_id in line and line.startswith("{")]
    ours = [e for e in about if e["logger"].startswith("aopbot")]
    assert {e["msg"] for e in ours} >= {"escalation opened", "escalation approved"}
    assert all(e.get("escalation_id") == esc_id and e.get("trace_id") == "4bf92f3577b34da6" for e in ours)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the connection, not the database, is under test
def test_socket_mode_reconnects_after_the_connection_drops(db, db_url, stub, socket_stub, registry_path, tmp_path):
    """The stand-in cuts the WebSocket (no close frame): the bot opens a new connection by itself and
    a click sent over it is acted on."""
    with db.transaction() as s:
        new = tokens.create(s, ["refunds"], "agent")
    bot = ServeProcess({
        "DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": "xapp-1-test", "SLACK_API_URL": stub.url,
        "AOP_TICK_SECONDS": "0.2",
    }, tmp_path / "serve.log").start()
    try:
        wait_for(lambda: socket_stub.connected, what="the Socket Mode connection")
        socket_stub.drop()
        wait_for(lambda: socket_stub.handshakes >= 2 and socket_stub.connected, timeout=90,
                 what="a new Socket Mode connection after the drop")
        assert len(stub.calls_to("apps.connections.open")) >= 2  # a fresh URL, as Slack requires
        http = httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"})
        esc_id = http.post("/api/v1/escalations", json={
            "process_id": "refunds", "action": {"summary": "Refund $40", "tools": ["billing.refund"]}}).json()["id"]
        approve_over_socket_mode(stub, socket_stub, http, esc_id)  # over the new connection
    finally:
        code = bot.stop()
    assert code == 0, bot.log()
