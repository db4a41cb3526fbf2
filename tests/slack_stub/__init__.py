"""The tests' Slack: the product's own sandbox workspace, served on a port of its own."""

from __future__ import annotations

from bot.sandbox.transport import StandaloneServer
from bot.sandbox.workspace import SlackWorkspace


class SlackStub(SlackWorkspace):
    def start(self) -> SlackStub:
        self._http = StandaloneServer(self).start()
        return self

    @property
    def url(self) -> str:
        return self._http.url

    def response_url(self, channel: str, user: str) -> str:
        """A response_url for one command, as Slack issues it; what the app posts there is kept."""
        return self.issue_response_url(self._http.base, channel, user)

    def stop(self) -> None:
        self._http.stop()


__all__ = ["SlackStub"]
