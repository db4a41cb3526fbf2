"""Acceptance (issue 6, point 4) and the agent's ways to learn the outcome: signed callbacks that
survive a receiver being down, never block other deliveries; long-poll."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from freezegun import freeze_time

from bot.domain import escalations


class Receiver:
    """An agent's webhook endpoint on 127.0.0.1 that can be down (5xx) for a while."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False):
        self.received: list[tuple[dict, str, str]] = []
        self.attempts = 0
        self.fail_first, self.always_fail = fail_first, always_fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.always_fail or receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((body, self.headers["X-Aopbot-Timestamp"],
                                          self.headers["X-Aopbot-Signature"]))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def verify(secret: str, body: bytes, timestamp: str, signature: str) -> bool:
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def test_callbacks_survive_a_receiver_that_is_down_and_never_block_others(services, agent, receivers):
    flaky, dead = receivers(fail_first=3), receivers(always_fail=True)
    with freeze_time("2026-11-25 10:00:00") as frozen:
        ids = [agent.signal(callback_url=flaky.url, idempotency_key=f"k{i}").json()["id"] for i in range(3)]
        stuck = agent.signal(callback_url=dead.url, idempotency_key="dead").json()["id"]
        services.outbox.drain()
        for esc_id in [stuck, *ids]:
            escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
        for _ in range(12):  # backoff 1, 2, 4, 8 … s, travelled through
            services.outbox.drain()
            frozen.tick(timedelta(seconds=30))
    outcomes = {json.loads(body)["id"]: (json.loads(body), ts, sig) for body, ts, sig in flaky.received}
    assert sorted(outcomes) == sorted(ids)  # every outcome arrived once the receiver came back
    assert len(flaky.received) == 3  # and none twice
    for body, ts, sig in flaky.received:
        assert verify(agent.callback_secret, body, ts, sig)
        assert not verify("whsec_wrong", body, ts, sig)
        assert json.loads(body)["status"] == "approved" and json.loads(body)["decided_by"] == "U0ESCOWNER"
    assert dead.attempts >= 5 and dead.received == []  # still retrying, never blocking the others


def test_callbacks_resume_after_a_restart(services, settings, agent, receivers):
    """The retry lives in the database: a new process (new Services) delivers what the old one could not."""
    from bot.ops.app import build_services
    from bot.ops.db import Database

    down = receivers(always_fail=True)
    esc_id = agent.signal(callback_url=down.url).json()["id"]
    services.outbox.drain()
    escalations.decide(services.db, esc_id, "U0ESCOWNER", "reject", "no")
    services.outbox.drain()
    assert down.attempts == 1
    down.always_fail = False
    restarted = build_services(settings, Database(settings.database_url))
    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 60))):
        restarted.outbox.drain()
    assert len(down.received) == 1 and json.loads(down.received[0][0])["status"] == "rejected"


def test_long_poll_returns_when_decided(services, agent):
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    # Decided while the agent is already waiting: the same long-poll answers with the outcome.
    threading.Timer(0.6, lambda: escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")).start()
    view = agent.get(esc_id, wait=60)
    assert view["status"] == "approved" and view["decided_by"] == "U0ESCOWNER"
    assert agent.http.get(f"/api/v1/escalations/{esc_id}", params={"wait": 61}).status_code == 422


def test_long_poll_times_out_with_the_pending_state(agent):
    esc_id = agent.signal().json()["id"]
    view = agent.get(esc_id, wait=1)
    assert view["status"] == "pending" and view["decision"] is None


def test_get_escalation_scoping(agent, make_agent):
    esc_id = agent.signal().json()["id"]
    other = make_agent(processes=["kyc"])
    assert other.http.get(f"/api/v1/escalations/{esc_id}").status_code == 403
    assert agent.http.get("/api/v1/escalations/esc_nope").status_code == 404
