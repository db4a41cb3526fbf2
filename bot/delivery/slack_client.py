"""The one Slack Web API client: a WebClient whose failures come back typed.

`deliver()` turns what Slack answered into what the outbox should do: `RetryLater` (a 429 with its
Retry-After, a 5xx, a transient error, a network failure) or `PermanentFailure` (any other error
Slack names: it will not fix itself). Where a person waits (ephemerals, modals, App Home) the client
is built `interactive`: slack_sdk's own retry handlers wait out a rate limit or a 5xx in place.
Outbox clients are not: only that row waits, other channels go on, and the retry survives a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from bot.delivery.outbox import PermanentFailure, RetryLater

log = logging.getLogger("aopbot.slack")

# Errors Slack answers for a passing problem on its side: worth another try.
TRANSIENT_ERRORS = {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}


def classify(e: Exception) -> RetryLater | PermanentFailure:
    """What a failed call means for its delivery, from slack_sdk's error data (status, error, headers)."""
    if not isinstance(e, SlackApiError):
        return RetryLater(f"slack unreachable: {type(e).__name__}: {e}")
    resp = e.response
    status, error = resp.status_code, resp.get("error")
    if status == 429:
        retry_after = float(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)))
        return RetryLater(f"slack rate limited: retry after {retry_after}s", delay_s=retry_after)
    if status >= 500 or error in TRANSIENT_ERRORS or not error:
        return RetryLater(f"slack error {error or status}")
    return PermanentFailure(f"slack error {error}")


class SlackClient(WebClient):
    def __init__(self, token: str | None, base_url: str, interactive: bool, timeout: int = 10):
        super().__init__(token=token, base_url=base_url, timeout=timeout)
        if interactive:
            self.retry_handlers.extend([
                RateLimitErrorRetryHandler(max_retry_count=1),
                ServerErrorRetryHandler(max_retry_count=2),
                ConnectionErrorRetryHandler(max_retry_count=2),
            ])

    def deliver(self, method: str, **kwargs: Any) -> SlackResponse:
        """Call a Web API method by its slack_sdk name (chat_postMessage, …); failures come back as
        RetryLater or PermanentFailure."""
        try:
            return getattr(self, method)(**kwargs)
        except Exception as e:
            raise classify(e) from e
