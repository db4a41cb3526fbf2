"""Outcomes back to agents: a signed POST to the escalation's callback_url (outbox kind "callback").

The body is the escalation as the agent's poll sees it (or an event about it: `process_paused`), or
a QA reviewer's verdict on a recorded action (`qa_review`), signed `v1=<HMAC-SHA256 of "timestamp.body">`
with the token's callback secret. A failure is retried by the outbox; nothing here touches Slack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta

import httpx

from bot.delivery.callback_address import delivery_refusal
from bot.delivery.outbox import Outbox, PermanentFailure, RetryLater
from bot.domain import escalation_view
from bot.domain.models import AgentToken, Escalation, QaReview
from bot.ops import clock
from bot.ops.db import Database


def sign_callback(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


ATTEMPT_DEADLINE_S = 10.0  # connect + the whole answer; a receiver that trickles bytes is cut off
GIVE_UP_AFTER = timedelta(hours=24)  # then the row is dead-lettered (failed): /metrics, digest, `aopbot outbox`


class Callbacks:
    """Deliveries of kind "callback". They run in a lane of their own (their own outbox claims,
    threads and scheduler job), so a slow or dead receiver can never delay a Slack page."""

    def __init__(self, db: Database, poll_url: Callable[[str], str], allow: frozenset[str] = frozenset()):
        self.db = db
        self.poll_url = poll_url
        self.allow = allow

    def register(self, ob: Outbox) -> None:
        ob.register("callback", self.deliver, give_up_after=GIVE_UP_AFTER)

    def deliver(self, item) -> None:
        url = item.payload["url"]
        refused = delivery_refusal(url, self.allow)
        if refused:
            raise PermanentFailure(f"callback_url refused: {refused}")
        with self.db.transaction() as s:
            if "qa_review" in item.payload:  # a verdict on a recorded action: signed with its record's token
                review = s.get(QaReview, item.payload["qa_review"])
                token = s.get(AgentToken, review.token_id) if review else None
                if token is None:
                    raise PermanentFailure("QA review or its token is gone")
                what = item.payload["event"]
            else:
                esc = s.get(Escalation, item.escalation_id)
                token = s.get(AgentToken, esc.token_id) if esc else None
                if esc is None or token is None:
                    raise PermanentFailure("escalation or its token is gone")
                # An event (the process was paused) is sent as queued; an outcome as the escalation is now.
                what = item.payload.get("event") or escalation_view.view(s, esc, self.poll_url(esc.id))
            body = json.dumps(what, separators=(",", ":")).encode()
            secret = token.callback_secret
        ts = str(int(clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Aopbot-Timestamp": ts,
            "X-Aopbot-Signature": sign_callback(secret, ts, body),
            "User-Agent": "aopbot-callback/1",
        }
        try:
            status = asyncio.run(_post(url, body, headers))
        except TimeoutError:
            raise RetryLater(f"callback took longer than {ATTEMPT_DEADLINE_S:.0f} s") from None
        except httpx.HTTPError as e:
            raise RetryLater(f"callback unreachable: {type(e).__name__}") from e
        if 300 <= status < 400:
            raise PermanentFailure(f"callback answered {status}: redirects are not followed")
        if not 200 <= status < 300:
            raise RetryLater(f"callback answered {status}")


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One attempt with one deadline for all of it (httpx's timeouts are per read)."""
    async with httpx.AsyncClient(timeout=ATTEMPT_DEADLINE_S, follow_redirects=False) as client:
        resp = await asyncio.wait_for(client.post(url, content=body, headers=headers), ATTEMPT_DEADLINE_S)
        return resp.status_code
