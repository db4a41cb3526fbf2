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

from bot.outbox import PermanentFailure, RetryLater

log = logging.getLogger("aopbot.slack")

# Errors that no retry can fix: the delivery is marked failed (and, later, falls back elsewhere).
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "user_not_found", "users_not_found",
    "invalid_blocks", "invalid_auth", "account_inactive", "token_revoked", "no_permission",
    "missing_scope", "msg_too_long", "cannot_dm_bot", "user_disabled", "message_not_found",
    "cant_update_message", "restricted_action", "invalid_arguments",
}


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


def classify(e: Exception) -> Exception:
    """Map a Slack client error to what the outbox should do with it."""
    if isinstance(e, SlackApiError):
        error = e.response.get("error") if e.response is not None else None
        if e.response is not None and e.response.status_code == 429:
            retry_after = float(e.response.headers.get("Retry-After", e.response.headers.get("retry-after", 1)))
            return RetryLater(f"slack rate limited: retry after {retry_after}s", delay_s=retry_after)
        if error in PERMANENT_ERRORS:
            return PermanentFailure(f"slack error {error}")
        return RetryLater(f"slack error {error or e.response.status_code}")
    return RetryLater(f"slack unreachable: {type(e).__name__}: {e}")
