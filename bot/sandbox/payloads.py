"""Slack's requests to the app, as Slack builds and signs them: slash commands, button clicks, modal
submissions, events. The sandbox page sends these through /slack/events (the path real Slack takes),
and the tests send the very same ones."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

TEAM = {"id": "T1", "domain": "sandbox"}


def sign(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: str, content_type: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body)}


def _user(user: str) -> dict[str, Any]:
    return {"id": user, "username": user.lower(), "team_id": TEAM["id"]}


def form_body(payload: dict[str, Any]) -> str:
    """An interaction as Slack posts it: a form with one field, payload, holding the JSON."""
    return urlencode({"payload": json.dumps(payload)})


def slash_command(user: str, text: str, channel: str, response_url: str, trigger_id: str,
                  channel_name: str = "") -> str:
    return urlencode({
        "token": "legacy", "team_id": TEAM["id"], "team_domain": TEAM["domain"], "channel_id": channel,
        "channel_name": channel_name or channel.lower(), "user_id": user, "user_name": user.lower(),
        "command": "/aop", "text": text, "api_app_id": "A1", "response_url": response_url,
        "trigger_id": trigger_id,
    })


def _action(action_id: str, value: str, block_id: str) -> dict[str, Any]:
    return {"action_id": action_id, "block_id": block_id, "value": value, "type": "button",
            "action_ts": f"{time.time():.6f}"}


def message_click(user: str, action_id: str, value: str, channel: str, message: dict[str, Any],
                  trigger_id: str, response_url: str, block_id: str = "decide") -> dict[str, Any]:
    """A block_actions payload for a button in a message (message: ts, thread_ts, text, blocks)."""
    return {
        "type": "block_actions", "user": _user(user), "api_app_id": "A1", "token": "legacy", "team": TEAM,
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel,
                      "is_ephemeral": False},
        "trigger_id": trigger_id, "channel": {"id": channel, "name": channel.lower()},
        "message": {"type": "message", **message}, "response_url": response_url,
        "actions": [_action(action_id, value, block_id)],
    }


def home_click(user: str, action_id: str, value: str, view: dict[str, Any], trigger_id: str,
               block_id: str = "home") -> dict[str, Any]:
    """A block_actions payload for a button in the App Home tab."""
    view_id = view.get("id") or f"VHOME{user}"
    return {
        "type": "block_actions", "user": _user(user), "api_app_id": "A1", "token": "legacy", "team": TEAM,
        "container": {"type": "view", "view_id": view_id}, "trigger_id": trigger_id,
        "view": {"id": view_id, "type": "home", "blocks": view.get("blocks", []), "callback_id": "",
                 "hash": "1", "private_metadata": "", "state": {"values": {}}},
        "actions": [_action(action_id, value, block_id)],
    }


def view_submission(user: str, view: dict[str, Any], values: dict[str, Any], trigger_id: str) -> dict[str, Any]:
    """A modal's submission (view: the view as opened, with its id, callback_id, private_metadata)."""
    return {
        "type": "view_submission", "team": TEAM, "user": _user(user), "api_app_id": "A1", "token": "legacy",
        "trigger_id": trigger_id,
        "view": {"id": view.get("id", "V1"), "type": "modal", "callback_id": view.get("callback_id", ""),
                 "private_metadata": view.get("private_metadata", ""), "state": {"values": values},
                 "hash": "1", "team_id": TEAM["id"], "app_id": "A1", "bot_id": "BBOT",
                 "title": view.get("title") or {"type": "plain_text", "text": "Modal"},
                 "blocks": view.get("blocks", [])},
    }


def event_body(event: dict[str, Any]) -> str:
    return json.dumps({"token": "legacy", "team_id": TEAM["id"], "api_app_id": "A1", "event": event,
                       "type": "event_callback", "event_id": f"Ev{time.time_ns()}",
                       "event_time": int(time.time())})


def app_home_opened(user: str) -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "tab": "home", "channel": "D" + user[1:]}
