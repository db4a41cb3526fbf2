"""The SDK against the real thing: an `aopbot serve` process on SQLite, paging the Slack stand-in,
and decisions clicked through signed interactions as Slack sends them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.domain import tokens
from tests.conftest import SIGNING_SECRET, wait_for
from tests.helpers import click, escalation_messages
from tests.procs import ServeProcess, serve_env
from tests.slack_requests import SlackSender, view_submission
from tests.slack_stub import SlackStub

ESC_ID = re.compile(r"esc_[0-9a-f]{20}")


@dataclass
class Served:
    """A running bot, a token for the agent under test, and a person clicking in Slack."""

    url: str
    token: str
    callback_secret: str
    stub: SlackStub
    slack: SlackSender
    bot: ServeProcess

    @property
    def env(self) -> dict[str, str]:
        return {"AOP_URL": self.url, "AOP_TOKEN": self.token}

    def escalation_ids(self, channel: str = "C0REFUNDS") -> list[str]:
        """Escalations paged in a channel, oldest first (one parent message each)."""
        found: list[str] = []
        for m in self.stub.channel_messages(channel):
            for esc_id in ESC_ID.findall(str(m.blocks)) if m.thread_ts is None else ():
                if esc_id not in found:
                    found.append(esc_id)
        return found

    def paged(self, count: int, channel: str = "C0REFUNDS") -> str:
        """Wait until `count` escalations are paged in the channel; the newest one's id."""
        ids = wait_for(lambda: len(ids := self.escalation_ids(channel)) >= count and ids, timeout=60,
                       what=f"escalation {count} to be paged")
        return ids[-1]

    def thread(self, esc_id: str, channel: str = "C0REFUNDS"):
        return wait_for(lambda: _thread_of(self.stub, channel, esc_id), timeout=60, what="the thread card")

    def approve(self, esc_id: str, user: str = "U0ESCOWNER", channel: str = "C0REFUNDS") -> None:
        click(self.slack, self.stub, user, "aop_approve", self.thread(esc_id, channel))

    def reject(self, esc_id: str, reason: str, user: str = "U0ESCOWNER") -> None:
        before = len(self.stub.calls_to("views.open"))
        click(self.slack, self.stub, user, "aop_reject", self.thread(esc_id))
        opened = wait_for(lambda: len(calls := self.stub.calls_to("views.open")) > before and calls[-1],
                          what="the reject modal")
        submit = view_submission(user, "aop_reject_modal", opened.args["view"]["private_metadata"],
                                 {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}})
        assert self.slack.interaction(submit).status_code == 200


def _thread_of(stub: SlackStub, channel: str, esc_id: str):
    try:
        return escalation_messages(stub, channel, esc_id)[1]
    except AssertionError:  # the thread card is not posted yet
        return None


@pytest.fixture
def served(db, db_url, stub, registry_path, tmp_path) -> Iterator[Served]:
    with db.transaction() as s:
        new = tokens.create(s, ["refunds", "summaries"], "sdk-agent")
    bot = ServeProcess(serve_env(db_url, stub, registry_path), tmp_path / "serve.log").start()
    slack = SlackSender(bot.url, SIGNING_SECRET, workspace=stub)
    try:
        yield Served(bot.url, new.token, new.callback_secret, stub, slack, bot)
    finally:
        slack.close()
        bot.stop()
