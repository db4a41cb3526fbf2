"""Outcomes back to agents: a signed POST to the escalation's callback_url (outbox kind "callback").

The body is the escalation as the agent's poll sees it, signed `v1=<HMAC-SHA256 of "timestamp.body">`
with the token's callback secret. A failure is retried by the outbox; nothing here touches Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx

from bot.delivery.outbox import Outbox, PermanentFailure, RetryLater
from bot.domain import escalation_view
from bot.domain.models import AgentToken, Escalation
from bot.ops import clock
from bot.ops.db import Database


def sign_callback(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class Callbacks:
    def __init__(self, db: Database, poll_url: Callable[[str], str], http: httpx.Client | None = None):
        self.db = db
        self.poll_url = poll_url
        self.http = http or httpx.Client(timeout=10)

    def register(self, ob: Outbox) -> None:
        ob.register("callback", self.deliver)

    def deliver(self, item) -> None:
        with self.db.transaction() as s:
            esc = s.get(Escalation, item.escalation_id)
            token = s.get(AgentToken, esc.token_id) if esc else None
            if esc is None or token is None:
                raise PermanentFailure("escalation or its token is gone")
            body = json.dumps(escalation_view.view(s, esc, self.poll_url(esc.id)), separators=(",", ":")).encode()
            secret = token.callback_secret
        ts = str(int(clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Aopbot-Timestamp": ts,
            "X-Aopbot-Signature": sign_callback(secret, ts, body),
            "User-Agent": "aopbot-callback/1",
        }
        try:
            resp = self.http.post(item.payload["url"], content=body, headers=headers)
        except httpx.HTTPError as e:
            raise RetryLater(f"callback unreachable: {type(e).__name__}") from e
        if not 200 <= resp.status_code < 300:
            raise RetryLater(f"callback answered {resp.status_code}")
