"""Acceptance (issue 6, point 4) and the agent's ways to learn the outcome: signed callbacks that
survive a receiver being down, never block other deliveries; long-poll."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from freezegun import freeze_time

from bot.domain import escalations
from tests.conftest import wait_for
from tests.webhooks import verify


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
            services.callbacks.drain()
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
    services.callbacks.drain()
    assert down.attempts == 1
    down.always_fail = False
    restarted = build_services(settings, Database(settings.database_url))
    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 60))):
        restarted.callbacks.drain()
    assert len(down.received) == 1 and json.loads(down.received[0][0])["status"] == "rejected"


class PollReads:
    """Counts the database reads the API's long-poll makes (statements from its worker threads)."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.count = 0
        self.engine = engine

        def seen(conn, cursor, statement, *args):
            if "FROM votes" in statement and "AnyIO" in threading.current_thread().name:
                self.count += 1

        self._seen = seen
        event.listen(engine, "before_cursor_execute", seen)

    def close(self):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_long_poll_returns_when_decided(services, agent):
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    reads = PollReads(services.db.engine)
    try:
        # Decided while the agent is already waiting: the commit wakes the same long-poll (no polling).
        threading.Timer(0.6, lambda: escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")).start()
        view = agent.get(esc_id, wait=60)
        assert view["status"] == "approved" and view["decided_by"] == "U0ESCOWNER"
        assert reads.count == 2  # the first read, and the one after the wake-up
    finally:
        reads.close()
    assert agent.http.get(f"/api/v1/escalations/{esc_id}", params={"wait": 61}).status_code == 422


def test_long_poll_times_out_with_the_pending_state_without_polling(services, agent):
    esc_id = agent.signal().json()["id"]
    reads = PollReads(services.db.engine)
    try:
        view = agent.get(esc_id, wait=3)
        assert view["status"] == "pending" and view["decision"] is None
        assert reads.count == 2  # one read at the start, one at the end: nothing while idle
    finally:
        reads.close()


def test_get_escalation_scoping(agent, make_agent):
    esc_id = agent.signal().json()["id"]
    other = make_agent(processes=["kyc"])
    assert other.http.get(f"/api/v1/escalations/{esc_id}").status_code == 403
    assert agent.http.get("/api/v1/escalations/esc_nope").status_code == 404


@pytest.mark.parametrize("url", ["http://127.0.0.2/hook", "https://169.254.169.254/", "https://10.0.0.1/x",
                                 "http://0x7f000001/", "https://user:pw@example.com/x"])
def test_a_callback_url_to_a_private_address_is_a_422(agent, url):
    resp = agent.signal(callback_url=url)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "callback_url", resp.text


class SlowReceiver:
    """Black holes (accept, never answer) or trickles (one byte every 2 s, never finishing)."""

    def __init__(self, trickle: bool):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.stopping = threading.Event()
        self.conns: list = []

        def serve():
            while not self.stopping.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.conns.append(conn)
                if trickle:
                    threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def _trickle(self, conn):
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            if self.stopping.wait(2):
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                return

    def stop(self):
        self.stopping.set()
        self.sock.close()
        for c in self.conns:
            c.close()


def test_slow_and_dead_receivers_never_delay_a_page(services, stub, make_agent):
    """8 receivers that never answer and one that trickles, while 50 escalations of other processes are
    paged: every page goes out while the callbacks are still stuck in their own lane."""
    slow = [SlowReceiver(trickle=i == 0) for i in range(9)]
    agent = make_agent()
    try:
        stuck = [agent.signal(callback_url=r.url, idempotency_key=f"slow{i}").json()["id"] for i, r in enumerate(slow)]
        services.outbox.drain()
        for esc_id in stuck:
            escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
        lane = threading.Thread(target=services.callbacks.run_once, daemon=True)  # one batch
        lane.start()  # the callback lane is now busy with receivers that will not answer
        wait_for(lambda: sum(len(r.conns) for r in slow) >= 4, what="the callbacks to connect")
        paged = [agent.signal(process_id="summaries", action={"summary": f"note {i}"}, idempotency_key=f"p{i}")
                 .json()["id"] for i in range(50)]
        services.outbox.drain()  # the Slack lane, while the callback lane is stuck
        assert lane.is_alive()  # still stuck: the pages below did not wait for it
        posted = json.dumps([c.args for c in stub.calls_to("chat.postMessage")])
        assert all(esc_id in posted for esc_id in paged)
        lane.join(timeout=120)  # each attempt ends at its deadline (10 s), and is retried later
        assert not lane.is_alive()
        from bot.domain.models import OutboxItem

        with services.db.transaction() as s:
            rows = s.query(OutboxItem).filter(OutboxItem.kind == "callback").all()
        assert {r.status for r in rows} == {"pending"} and all("10 s" in (r.last_error or "") or
                                                               "unreachable" in (r.last_error or "") for r in rows)
    finally:
        for r in slow:
            r.stop()


def test_a_callback_that_keeps_failing_is_dead_lettered_after_a_day(services, agent, receivers):
    down = receivers(always_fail=True)
    with freeze_time("2026-11-25 10:00:00") as frozen:
        esc_id = agent.signal(callback_url=down.url).json()["id"]
        escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
        for _ in range(30):
            services.callbacks.drain()
            frozen.tick(timedelta(hours=1))
    from bot.domain.models import OutboxItem

    with services.db.transaction() as s:
        row = s.query(OutboxItem).filter(OutboxItem.kind == "callback").one()
    assert row.status == "failed" and "gave up after 1 day" in row.last_error
    metrics = agent.http.get("/metrics").text
    assert 'aopbot_outbox_failed{kind="callback"} 1.0' in metrics
    from tests.procs import aopbot

    env = {"DATABASE_URL": services.settings.database_url}
    listed = aopbot("outbox", "list", "--status", "failed", env=env)
    assert listed.returncode == 0 and f"{row.id}\tfailed\tcallback" in listed.stdout
    down.always_fail = False  # the agent fixed its endpoint: the operator sends it again
    assert aopbot("outbox", "retry", str(row.id), env=env).returncode == 0
    services.callbacks.drain()
    assert len(down.received) == 1 and json.loads(down.received[0][0])["status"] == "approved"


def test_at_tier_2_a_long_poll_waits_past_the_acknowledgement_for_the_outcome(services, agent):
    """'I'm on it' is not an outcome at tier 2+: the agent keeps waiting, and gets the decision."""
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()

    def ack_then_decide():
        escalations.acknowledge(services.db, esc_id, "U0ESCOWNER")
        threading.Timer(0.5, lambda: escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")).start()
    threading.Timer(0.5, ack_then_decide).start()
    view = agent.get(esc_id, wait=60)
    assert view["status"] == "approved" and view["acknowledged_by"] == "U0ESCOWNER"


def test_a_pause_ends_the_long_polls_of_the_process_at_once(services, agent):
    from bot.domain import processes

    esc_id = agent.signal().json()["id"]
    proc = services.registry.get("refunds")
    threading.Timer(0.5, lambda: processes.set_paused(services.db, proc, "U0DRI", True, "bad refunds",
                                                      None)).start()
    view = agent.get(esc_id, wait=60)  # a wait that ran out would say "active"
    assert (view["status"], view["process_status"]) == ("pending", "paused")


def test_a_revoked_tokens_long_poll_ends_with_401(services, agent, db):
    """Revoked from the CLI (another process: nothing wakes the poll) it is seen by the slow poll."""
    from bot.domain import tokens

    esc_id = agent.signal().json()["id"]

    def revoke():
        with db.transaction() as s:
            tokens.revoke(s, agent.token_id)
    threading.Timer(0.5, revoke).start()
    resp = agent.http.get(f"/api/v1/escalations/{esc_id}", params={"wait": 60})
    assert resp.status_code == 401 and resp.json()["errors"][0]["field"] == "Authorization"
