"""Slack's requests to us, as Slack sends them: the sandbox's payload builders, signed and posted over
HTTP. With a workspace, each request carries a trigger_id issued by it (as Slack issues one per
request), so views.open holds the bot to Slack's 3-second trigger rule; with the stand-in, each slash
command carries a response_url it serves, so an answer that comes after the ack is seen too."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bot.sandbox import payloads
from bot.sandbox.payloads import sign  # noqa: F401 - tests sign bodies by hand too
from bot.sandbox.workspace import SlackWorkspace
from handlers.common import WORKING_ON_IT
from tests.slack_stub import SlackStub


class SlackSender:
    def __init__(self, base_url: str, secret: str, workspace: SlackWorkspace | None = None):
        self.url = base_url.rstrip("/") + "/slack/events"
        self.secret = secret
        self.workspace = workspace
        self.http = httpx.Client(timeout=10)

    def close(self) -> None:
        self.http.close()

    def _trigger(self, user: str) -> str:
        return self.workspace.issue_trigger(user) if self.workspace is not None else "1.2.3"

    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded",
             timestamp: int | None = None, secret: str | None = None, extra_headers: dict | None = None):
        headers = {**payloads.signed_headers(secret or self.secret, body, content_type, timestamp),
                   **(extra_headers or {})}
        return self.http.post(self.url, content=body.encode(), headers=headers)

    def event(self, event: dict[str, Any], **kw):
        return self.post(payloads.event_body(event), content_type="application/json", **kw)

    def interaction(self, payload: dict[str, Any], **kw):
        payload = {**payload, "trigger_id": self._trigger(payload["user"]["id"])}
        return self.post(payloads.form_body(payload), **kw)

    def response_url(self, channel: str, user: str) -> str:
        if isinstance(self.workspace, SlackStub):
            return self.workspace.response_url(channel, user)
        return "https://hooks.invalid/commands/1"

    def command(self, user: str, text: str, channel: str = "C0REFUNDS", response_url: str | None = None, **kw):
        response_url = response_url or self.response_url(channel, user)
        return self.post(payloads.slash_command(user, text, channel, response_url, self._trigger(user),
                                                channel_name="refunds"), **kw)

    def ask(self, user: str, text: str, channel: str = "C0REFUNDS", timeout: float = 10.0) -> dict[str, Any]:
        """/aop as the person sees its answer: the ack's body, or, when the ack only said it is working
        on it (the answer took longer than the command budget), what came through the response_url."""
        from tests.conftest import wait_for  # conftest imports this module

        response_url = self.response_url(channel, user)
        resp = self.command(user, text, channel, response_url=response_url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body.get("text") != WORKING_ON_IT:
            return body
        assert isinstance(self.workspace, SlackStub), "an answer after the ack needs the stand-in's response_url"
        return wait_for(lambda: self.workspace.responses_to(response_url), timeout,
                        what="the answer through response_url")[0]


def block_action(user: str, action_id: str, value: str, channel: str, message: dict[str, Any]) -> dict[str, Any]:
    """A block_actions payload for a click on a button in a channel message."""
    return payloads.message_click(user, action_id, value, channel, message, trigger_id="1.2.3",
                                  response_url="https://hooks.invalid/actions/1")


def view_submission(user: str, callback_id: str, private_metadata: str, values: dict[str, Any]) -> dict[str, Any]:
    view = {"id": "V1", "callback_id": callback_id, "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": "Reject"}}
    return payloads.view_submission(user, view, values, trigger_id="1.2.3")


__all__ = ["SlackSender", "block_action", "view_submission", "json"]
