"""Acceptance (issue 15, point 5): `verify_callback` accepts the bot's real callbacks (signed by its
outbox, as delivered) and refuses a changed body, a wrong secret and a timestamp 10 minutes old."""

from __future__ import annotations

import pytest

from aopbot_client import InvalidSignature, verify_callback
from bot.delivery.callbacks import sign_callback
from bot.domain import escalations
from tests.webhooks import Receiver

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_verify_callback_accepts_the_bots_callbacks_and_refuses_forgeries(services, agent, receiver):
    approved = agent.signal(callback_url=receiver.url, idempotency_key="a").json()["id"]
    rejected = agent.signal(callback_url=receiver.url, idempotency_key="b").json()["id"]
    cancelled = agent.signal(callback_url=receiver.url, idempotency_key="c").json()["id"]
    services.outbox.drain()
    escalations.decide(services.db, approved, "U0ESCOWNER", "approve")
    escalations.decide(services.db, rejected, "U0ESCOWNER", "reject", "not this customer")
    assert agent.http.post(f"/api/v1/escalations/{cancelled}/cancel").status_code == 200
    services.callbacks.drain()
    assert len(receiver.received) == 3

    secret = agent.callback_secret
    assert secret.startswith("whsec_")
    outcomes = {}
    for body, timestamp, signature in receiver.received:
        headers = {"X-Aopbot-Timestamp": timestamp, "X-Aopbot-Signature": signature}
        esc = verify_callback(body, headers, secret)
        outcomes[esc.id] = esc
        # header names in any case, the body as text: the same verdict
        assert verify_callback(body.decode(), {k.lower(): v for k, v in headers.items()}, secret) == esc

        with pytest.raises(InvalidSignature, match="signature"):
            verify_callback(body.replace(b'"status":"', b'"status":"x'), headers, secret)  # altered
        with pytest.raises(InvalidSignature, match="signature"):
            verify_callback(body, headers, "whsec_" + "A" * 32)  # wrong secret
        with pytest.raises(InvalidSignature, match="signature"):
            verify_callback(body, headers, secret.removeprefix("whsec_"))  # the secret is the whole whsec_ string
        with pytest.raises(InvalidSignature, match="replay"):
            verify_callback(body, headers, secret, now=int(timestamp) + 600)  # delivered 10 minutes ago
        old = str(int(timestamp) - 600)  # signed properly, but 10 minutes old
        with pytest.raises(InvalidSignature, match="replay"):
            verify_callback(body, {"X-Aopbot-Timestamp": old, "X-Aopbot-Signature": sign_callback(secret, old, body)},
                            secret)
        with pytest.raises(InvalidSignature, match="header"):
            verify_callback(body, {}, secret)

    assert {e: (o.status, o.decided_by, o.reason) for e, o in outcomes.items()} == {
        approved: ("approved", "U0ESCOWNER", None),
        rejected: ("rejected", "U0ESCOWNER", "not this customer"),
        cancelled: ("cancelled", None, "cancelled by the agent"),
    }
    assert outcomes[approved].approved and outcomes[approved].action_hash
