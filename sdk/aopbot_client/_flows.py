"""The client's logic without I/O.

Each operation is a generator that yields what it needs done, a `Send` (an HTTP request) or a
`Sleep`, and is sent back what happened (an `httpx.Response`, or the `httpx.TransportError` the
request raised). `AopClient` runs these with `httpx.Client` and `time.sleep`, `AsyncAopClient` with
`httpx.AsyncClient` and `asyncio.sleep`: retries, long-poll resumption and the approval flow exist
once for both, and tests can run them with no clock and no network.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic_core import to_jsonable_python

from aopbot_client.errors import AopConnectionError, AopError, error_for
from aopbot_client.models import ChangelogEntry, Escalation, EscalationFields, Process, RecordFields

T = TypeVar("T")

MAX_WAIT_S = 60  # the server's cap on one long-poll
LONG_POLL_SLACK_S = 15  # the HTTP timeout of a long-poll: its wait plus this


@dataclass(frozen=True)
class Send:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    timeout: float | None = None  # None: the client's
    # May it be sent again after it may have reached the server? A change-log record may not (the
    # server would write it twice): it is retried only when the server surely did not act on it.
    idempotent: bool = True


@dataclass(frozen=True)
class Sleep:
    seconds: float


Flow = Generator[Send | Sleep, Any, T]


@dataclass(frozen=True)
class Retry:
    """Transient failures (connection errors, 5xx, 429) are retried with exponential backoff and
    jitter (or the server's Retry-After) until `deadline_s` has passed since the first attempt."""

    deadline_s: float = 30.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.first_backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Context:
    """What every flow needs from its client."""

    retry: Retry
    clock: Callable[[], float]  # monotonic seconds
    model: str | None = None  # sent with escalations and records that name none
    paused_poll_s: float = 30.0  # a wait's pause between polls while the process is paused


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NOT_ACTED_STATUSES = frozenset({429, 503})  # refused before acting: safe to resend even a record
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # never reached the server


def body_of(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def request(ctx: Context, send: Send) -> Flow[httpx.Response]:
    """One API call with retries; a 2xx answer, or the typed error of the last attempt."""
    deadline = ctx.clock() + ctx.retry.deadline_s
    attempt = 0
    while True:
        outcome = yield send
        if isinstance(outcome, httpx.Response):
            if outcome.is_success:
                return outcome
            error = error_for(outcome.status_code, body_of(outcome), outcome.headers.get("retry-after"))
            retryable = outcome.status_code in (RETRY_STATUSES if send.idempotent else NOT_ACTED_STATUSES)
        else:
            error = AopConnectionError(f"{send.method} {send.path}: {type(outcome).__name__}: {outcome}")
            error.__cause__ = outcome
            retryable = send.idempotent or isinstance(outcome, NOT_SENT)
        delay = error.retry_after if error.retry_after is not None else ctx.retry.backoff(attempt)
        if not retryable or ctx.clock() + delay > deadline:
            raise error
        attempt += 1
        yield Sleep(delay)


def escalation_body(process_id: str, summary: str, fields: EscalationFields) -> dict[str, Any]:
    rest = dict(fields)
    action = {"summary": summary, "tools": list(rest.pop("tools", [])), "params": rest.pop("params", {})}
    return to_jsonable_python({"process_id": process_id, "action": action, **rest})


def escalate(ctx: Context, process_id: str, summary: str, fields: EscalationFields) -> Flow[Escalation]:
    body = escalation_body(process_id, summary, fields)
    if ctx.model is not None:
        body.setdefault("model", ctx.model)
    # A key of its own, so a retry after a lost answer finds this escalation instead of paging again.
    body.setdefault("idempotency_key", "sdk-" + uuid.uuid4().hex)
    resp = yield from request(ctx, Send("POST", "/api/v1/escalations", json=body))
    return Escalation.model_validate({**resp.json(), "created": resp.status_code == 201})


def get(ctx: Context, escalation_id: str, wait_s: int = 0) -> Flow[Escalation]:
    params = {"wait": wait_s} if wait_s else None
    resp = yield from request(ctx, Send("GET", f"/api/v1/escalations/{quote(escalation_id, safe='')}", params=params,
                                        timeout=wait_s + LONG_POLL_SLACK_S))
    return Escalation.model_validate(resp.json())


def wait(ctx: Context, escalation_id: str, timeout: float | None) -> Flow[Escalation]:
    """Long-poll until the escalation has ended or `timeout` seconds have passed (None: until it ends;
    the server always ends it, at the latest when it expires), one capped poll after another. While
    the process is paused the server answers at once: poll again only every `paused_poll_s`."""
    deadline = None if timeout is None else ctx.clock() + timeout
    while True:
        poll_s = MAX_WAIT_S if deadline is None else min(MAX_WAIT_S, math.ceil(max(0.0, deadline - ctx.clock())))
        esc = yield from get(ctx, escalation_id, poll_s)
        remaining = math.inf if deadline is None else deadline - ctx.clock()
        if esc.decided or remaining <= 0:
            return esc
        if esc.process_status == "paused":
            yield Sleep(min(ctx.paused_poll_s, remaining))


def cancel(ctx: Context, escalation_id: str) -> Flow[Escalation]:
    resp = yield from request(ctx, Send("POST", f"/api/v1/escalations/{quote(escalation_id, safe='')}/cancel"))
    return Escalation.model_validate(resp.json())


def record(ctx: Context, process_id: str, decision: str, fields: RecordFields) -> Flow[ChangelogEntry]:
    body = to_jsonable_python({"process_id": process_id, "decision": decision, **fields})
    body.setdefault("model", ctx.model or "unspecified")
    resp = yield from request(ctx, Send("POST", "/api/v1/changelog", json=body, idempotent=False))
    return ChangelogEntry.model_validate(resp.json())


def process(ctx: Context, process_id: str) -> Flow[Process]:
    resp = yield from request(ctx, Send("GET", f"/api/v1/processes/{quote(process_id, safe='')}"))
    return Process.model_validate(resp.json())


__all__ = ["AopError", "Context", "Flow", "Retry", "Send", "Sleep", "cancel", "escalate", "get", "process",
           "record", "request", "wait"]
