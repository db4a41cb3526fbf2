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

POST_EVENT = "aopbot_post"  # the metadata type of a message posted with post_once
FIND_PAGES = 3  # a lost post is found among the channel's latest 600 messages, or posted again

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

    def post_once(self, key: str, maybe_posted: bool, event_type: str = POST_EVENT,
                  event_payload: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """chat.postMessage that a crash cannot double: the message carries `key` in its metadata, and
        when an earlier attempt may have gone through (maybe_posted: a crash or a lost answer after
        the call) the channel (or thread) is searched for it first, and a message found is adopted."""
        if maybe_posted:
            found = self.find_post(kwargs["channel"], key, kwargs.get("thread_ts"))
            if found is not None:
                log.info("adopted a message an earlier attempt posted (%s)", key)
                return found
        metadata = {"event_type": event_type, "event_payload": {**(event_payload or {}), "post_key": key}}
        resp = self.deliver("chat_postMessage", metadata=metadata, **kwargs)
        return {"channel": resp["channel"], "ts": resp["ts"]}

    def find_post(self, channel: str, key: str, thread_ts: str | None = None,
                  pages: int = FIND_PAGES) -> dict[str, Any] | None:
        """Our message carrying `key`, among the channel's latest (or the thread's) messages, or None.
        A search Slack refuses (no history scope, a channel given by name) finds nothing: the post
        then goes out again, as it did before this check existed."""
        cursor = None
        for _ in range(pages):
            args: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
            if cursor:
                args["cursor"] = cursor
            try:
                resp = (self.deliver("conversations_replies", ts=thread_ts, **args) if thread_ts
                        else self.deliver("conversations_history", **args))
            except PermanentFailure as e:
                log.warning("could not look for an earlier copy in %s (%s); posting again", channel, e)
                return None
            for m in resp.get("messages", []):
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("post_key") == key:
                    return {"channel": resp.get("channel") or channel, "ts": m["ts"]}
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None
