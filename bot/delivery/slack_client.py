"""The one Slack Web API client: slack_sdk with its retry handlers, base URL from SLACK_API_URL."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.delivery.outbox import PermanentFailure, RetryLater

log = logging.getLogger("aopbot.slack")



def make_client(token: str | None, base_url: str, timeout: int = 10, retry_in_place: bool = True) -> WebClient:
    """The Web API client. For calls made while a person waits (ephemeral replies, modals), slack_sdk's
    retry handlers wait out a rate limit or a 5xx in place. The outbox's client (retry_in_place=False)
    hands every failure back instead: the outbox retries it with backoff, only that channel waits
    (Retry-After), other channels go on, and a retry survives a restart."""
    client = WebClient(token=token, base_url=base_url, timeout=timeout)
    if retry_in_place:
        client.retry_handlers.extend([
            RateLimitErrorRetryHandler(max_retry_count=1),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ])
    return client


# Errors Slack answers for a passing problem on its side: worth another try.
TRANSIENT_ERRORS = {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}


def classify(e: Exception) -> Exception:
    """Map a Slack client error to what the outbox should do with it: 429s, 5xx, transient errors and
    network failures are retried; any other error Slack names (ok: false) will not fix itself."""
    if isinstance(e, SlackApiError):
        resp = e.response
        error = resp.get("error") if resp is not None else None
        if resp is not None and resp.status_code == 429:
            retry_after = float(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)))
            return RetryLater(f"slack rate limited: retry after {retry_after}s", delay_s=retry_after)
        if resp is not None and resp.status_code >= 500 or error in TRANSIENT_ERRORS or not error:
            return RetryLater(f"slack error {error or resp.status_code}")
        return PermanentFailure(f"slack error {error}")
    return RetryLater(f"slack unreachable: {type(e).__name__}: {e}")
