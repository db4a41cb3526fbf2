"""Slack's requests to us, as Slack sends them: form bodies, signed with the signing secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx


def sign(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSender:
    def __init__(self, base_url: str, secret: str):
        self.url = base_url.rstrip("/") + "/slack/events"
        self.secret = secret
        self.http = httpx.Client(timeout=10)

    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded",
             timestamp: int | None = None, secret: str | None = None, extra_headers: dict | None = None):
        ts = str(int(timestamp if timestamp is not None else time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret or self.secret, ts, body),
            **(extra_headers or {}),
        }
        return self.http.post(self.url, content=body.encode(), headers=headers)

    def event(self, event: dict[str, Any], **kw):
        body = {"token": "legacy", "team_id": "T1", "api_app_id": "A1", "event": event, "type": "event_callback",
                "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time())}
        return self.post(json.dumps(body), content_type="application/json", **kw)

    def interaction(self, payload: dict[str, Any], **kw):
        return self.post(urlencode({"payload": json.dumps(payload)}), **kw)

    def command(self, user: str, text: str, channel: str = "C0REFUNDS",
                response_url: str = "https://hooks.invalid/commands/1", **kw):
        form = {
            "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": channel,
            "channel_name": "refunds", "user_id": user, "user_name": user.lower(), "command": "/aop",
            "text": text, "api_app_id": "A1", "response_url": response_url,
            "trigger_id": "1.2.3",
        }
        return self.post(urlencode(form), **kw)


def block_action(user: str, action_id: str, value: str, channel: str, message: dict[str, Any]) -> dict[str, Any]:
    """A block_actions payload for a click on a button in a channel message."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": channel, "name": "refunds"},
        "message": message,
        "response_url": "https://hooks.invalid/actions/1",
        "actions": [{"action_id": action_id, "block_id": "decide", "value": value, "type": "button",
                     "action_ts": str(time.time())}],
    }


def view_submission(user: str, callback_id: str, private_metadata: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "view": {"id": "V1", "type": "modal", "callback_id": callback_id, "private_metadata": private_metadata,
                 "state": {"values": values}, "hash": "1", "team_id": "T1", "app_id": "A1", "bot_id": "B1",
                 "title": {"type": "plain_text", "text": "Reject"}, "blocks": []},
    }
