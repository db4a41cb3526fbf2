"""`AopClient` (blocking) and `AsyncAopClient` (asyncio): the agent API of docs/api.md, typed.

Both run the same flows (`_flows`); they differ only in how a request is sent and a pause taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import metadata
from typing import Any, TypeVar, Unpack

import httpx

from aopbot_client import _flows
from aopbot_client._flows import Context, Flow, Retry, Send, Sleep
from aopbot_client.approval import ApprovalSpec
from aopbot_client.models import ChangelogEntry, Escalation, EscalationFields, Process, RecordFields

try:
    __version__ = metadata.version("aopbot-client")
except metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class _Base:
    """Configuration, both ways of running a flow, and the decorator (which wraps sync and async
    functions alike, whichever client it belongs to)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *, model: str | None = None,
                 timeout: float = 30.0, retry_deadline: float = 30.0, paused_poll_s: float = 30.0,
                 transport: Any = None):
        """base_url and token default to the environment's AOP_URL and AOP_TOKEN. `model` is sent with
        escalations and records that name none. `timeout` is one request's (a long-poll gets its wait
        on top); transient failures are retried for up to `retry_deadline` seconds."""
        base_url = base_url or os.environ.get("AOP_URL")
        token = token or os.environ.get("AOP_TOKEN")
        if not base_url:
            raise ValueError("no aopbot URL: pass base_url or set AOP_URL (e.g. http://127.0.0.1:3000)")
        if not token:
            raise ValueError("no token: pass token or set AOP_TOKEN (mint one with `aopbot token create`)")
        self.base_url = base_url.rstrip("/")
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url, "timeout": timeout, "transport": transport,
            "headers": {"Authorization": f"Bearer {token}", "User-Agent": f"aopbot-client/{__version__}"},
        }
        self._ctx = Context(Retry(deadline_s=retry_deadline), time.monotonic, model, paused_poll_s)
        self._sleep: Callable[[float], None] = time.sleep
        self._asleep: Callable[[float], Any] = asyncio.sleep

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.base_url!r})"

    # -- running flows --

    def _run_sync(self, flow: Flow[T], http: httpx.Client) -> T:
        outcome: Any = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, Sleep):
                    outcome = self._sleep(step.seconds)
                else:
                    outcome = _send_sync(http, step)
        except StopIteration as done:
            return done.value

    async def _run_async(self, flow: Flow[T], http: httpx.AsyncClient) -> T:
        outcome: Any = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, Sleep):
                    outcome = await self._asleep(step.seconds)
                else:
                    outcome = await _send_async(http, step)
        except StopIteration as done:
            return done.value

    @contextlib.contextmanager
    def _sync_http(self) -> Iterator[httpx.Client]:
        with httpx.Client(**self._http_options) as http:
            yield http

    @contextlib.asynccontextmanager
    async def _async_http(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(**self._http_options) as http:
            yield http

    # -- the decorator --

    def require_approval(self, process_id: str, summary: str | Callable[..., str], *, tools: list[str] | tuple = (),
                         rollback_plan: str | dict[str, Any] | Callable[..., Any] | None = None,
                         idempotency_key: Callable[..., str] | None = None, timeout: float | None = None,
                         **fields: Unpack[EscalationFields]) -> Callable[[F], F]:
        """Gate a tool function (sync or async) behind a human approval in Slack.

        The call's arguments are the action's params. summary, rollback_plan and any other
        escalation field given (message, reason, tier, inputs, policy_checks, expires_in_s, model,
        trace_id, callback_url, ...) may be a value or a callable taking the function's arguments.
        idempotency_key, if given, is such a callable returning the key (default: derived from the
        process, the function's name and the canonical arguments). timeout: seconds to wait for a
        decision before raising ApprovalTimeout (default: until the escalation ends). Raises
        ApprovalRejected, ApprovalExpired, ApprovalCancelled (all ApprovalDenied)."""
        for reserved in ("params", "idempotency_key"):
            if reserved in fields:
                raise TypeError(f"require_approval sets {reserved} itself")
        if rollback_plan is not None:
            fields["rollback_plan"] = rollback_plan  # type: ignore[typeddict-item]
        spec = ApprovalSpec(process_id, summary, tuple(tools), idempotency_key, timeout, dict(fields))

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def gated_async(*args: Any, **kwargs: Any) -> Any:
                    call = spec.call(fn, args, kwargs)
                    async with self._async_http() as http:
                        esc = await self._run_async(call.approval(self._ctx), http)
                        result = await fn(*args, **kwargs)
                        await self._run_async(call.done(self._ctx, esc), http)
                    return result

                return gated_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def gated(*args: Any, **kwargs: Any) -> Any:
                call = spec.call(fn, args, kwargs)
                with self._sync_http() as http:
                    esc = self._run_sync(call.approval(self._ctx), http)
                    result = fn(*args, **kwargs)
                    self._run_sync(call.done(self._ctx, esc), http)
                return result

            return gated  # type: ignore[return-value]

        return decorate


def _send_sync(http: httpx.Client, step: Send) -> httpx.Response | httpx.TransportError:
    try:
        return http.request(step.method, step.path, json=step.json, params=step.params,
                            timeout=step.timeout or httpx.USE_CLIENT_DEFAULT)
    except httpx.TransportError as e:
        return e


async def _send_async(http: httpx.AsyncClient, step: Send) -> httpx.Response | httpx.TransportError:
    try:
        return await http.request(step.method, step.path, json=step.json, params=step.params,
                                  timeout=step.timeout or httpx.USE_CLIENT_DEFAULT)
    except httpx.TransportError as e:
        return e


class AopClient(_Base):
    """The blocking client. One HTTP connection pool for its calls; close it (or use `with`)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, **options: Any):
        super().__init__(base_url, token, **options)
        self._http = httpx.Client(**self._http_options)

    def _run(self, flow: Flow[T]) -> T:
        return self._run_sync(flow, self._http)

    @contextlib.contextmanager
    def _sync_http(self) -> Iterator[httpx.Client]:
        yield self._http

    def escalate(self, process_id: str, summary: str, **fields: Unpack[EscalationFields]) -> Escalation:
        """Raise an escalation. Only fields given are sent; without an idempotency_key one is made up
        for this call, so retries after a lost answer do not page twice."""
        return self._run(_flows.escalate(self._ctx, process_id, summary, fields))

    def get(self, escalation_id: str) -> Escalation:
        return self._run(_flows.get(self._ctx, escalation_id))

    def wait(self, escalation_id: str, timeout: float | None = None) -> Escalation:
        """The escalation once it has ended, or as it is after `timeout` seconds (check `.decided`)."""
        return self._run(_flows.wait(self._ctx, escalation_id, timeout))

    def cancel(self, escalation_id: str) -> Escalation:
        return self._run(_flows.cancel(self._ctx, escalation_id))

    def record(self, process_id: str, decision: str, **fields: Unpack[RecordFields]) -> ChangelogEntry:
        """Write an action taken without escalation to the change log (cost_usd only when given)."""
        return self._run(_flows.record(self._ctx, process_id, decision, fields))

    def process(self, process_id: str) -> Process:
        return self._run(_flows.process(self._ctx, process_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAopClient(_Base):
    """The asyncio client: the same methods as AopClient, awaited. Close it with `aclose` (or `async with`)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, **options: Any):
        super().__init__(base_url, token, **options)
        self._http = httpx.AsyncClient(**self._http_options)

    async def _run(self, flow: Flow[T]) -> T:
        return await self._run_async(flow, self._http)

    @contextlib.asynccontextmanager
    async def _async_http(self) -> AsyncIterator[httpx.AsyncClient]:
        yield self._http

    async def escalate(self, process_id: str, summary: str, **fields: Unpack[EscalationFields]) -> Escalation:
        return await self._run(_flows.escalate(self._ctx, process_id, summary, fields))

    async def get(self, escalation_id: str) -> Escalation:
        return await self._run(_flows.get(self._ctx, escalation_id))

    async def wait(self, escalation_id: str, timeout: float | None = None) -> Escalation:
        return await self._run(_flows.wait(self._ctx, escalation_id, timeout))

    async def cancel(self, escalation_id: str) -> Escalation:
        return await self._run(_flows.cancel(self._ctx, escalation_id))

    async def record(self, process_id: str, decision: str, **fields: Unpack[RecordFields]) -> ChangelogEntry:
        return await self._run(_flows.record(self._ctx, process_id, decision, fields))

    async def process(self, process_id: str) -> Process:
        return await self._run(_flows.process(self._ctx, process_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAopClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
