"""The agent HTTP API (docs/api.md): FastAPI, pydantic-validated, every error naming its field."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool

from bot.api.schemas import ChangelogRecord, ErrorBody, EscalationCreated, EscalationSignal, EscalationView
from bot.domain import changelog, escalation_view, escalations, intake, processes, tokens
from bot.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Paused, RateLimited
from bot.domain.models import AgentToken
from bot.domain.registry import Registry
from bot.ops import clock
from bot.ops.db import Database
from bot.ops.migrate import is_current

log = logging.getLogger("aopbot.api")

MAX_WAIT_S = 60


# The domain's errors carry no HTTP codes; this is the one place that gives them theirs.
STATUS: dict[type[DomainError], int] = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 422, Paused: 423,
                                        RateLimited: 429}


def error_response(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": code, "message": message, "errors": errors or []}
    return JSONResponse(body, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is honest."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._refuse(send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        resp = error_response(413, "body_too_large", f"request body is over {self.max_bytes} bytes",
                              [{"field": "body", "message": f"at most {self.max_bytes} bytes"}])
        await resp({"type": "http"}, None, send)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def build_api(
    db: Database,
    registry: Registry,
    *,
    poll_url: Callable[[str], str],
    max_body_bytes: int = 1_048_576,
    on_commit: Callable[[], None] = lambda: None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="aopbot agent API",
        version="1",
        description="Escalation signals from AI agents to their human escalation owners in Slack.",
        responses={
            401: {"model": ErrorBody, "description": "Missing, unknown or revoked token"},
            403: {"model": ErrorBody, "description": "Token not scoped to that process"},
            404: {"model": ErrorBody, "description": "Unknown process or escalation"},
            422: {"model": ErrorBody, "description": "Invalid body; each error names its field"},
        },
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        errors = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
                  for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return error_response(422, "invalid_request", f"{first['field']}: {first['message']}", errors)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError):
        headers = {}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
        return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, errors, headers)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError):
        log.error("database unavailable: %s", type(exc).__name__)
        return error_response(503, "database_unavailable", "the database is not reachable; retry shortly",
                              headers={"Retry-After": "5"})

    def agent(request: Request) -> AgentToken:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _Unauthorized("send Authorization: Bearer <token> (mint one with `aopbot token create`)")
        with db.transaction() as s:
            tok = tokens.authenticate(s, presented.strip())
            if tok is None:
                raise _Unauthorized("unknown or revoked token")
            s.expunge(tok)
        return tok

    @app.exception_handler(_Unauthorized)
    async def _unauth(_request: Request, exc: _Unauthorized):
        return error_response(401, "unauthorized", str(exc), [{"field": "Authorization", "message": str(exc)}],
                              headers={"WWW-Authenticate": "Bearer"})

    @app.post("/api/v1/escalations", status_code=201, response_model=EscalationCreated,
              responses={200: {"model": EscalationCreated, "description": "Repeated idempotency_key"},
                         409: {"model": ErrorBody}, 423: {"model": ErrorBody}, 429: {"model": ErrorBody}})
    def create_escalation(signal: EscalationSignal, request: Request, token: AgentToken = Depends(agent)):
        for attempt in range(2):
            try:
                with db.transaction() as s:
                    esc, created = intake.open_escalation(s, registry, token, signal)
                    body = {"id": esc.id, "status": esc.status, "tier": esc.tier,
                            "poll_url": poll_url(esc.id)}
                break
            except IntegrityError:
                if attempt == 1:  # the same key raced twice and lost twice: say so, not 500
                    raise Conflict("concurrent requests with this idempotency_key; retry",
                                               field="idempotency_key") from None
        if created:
            log.info("escalation opened", extra={"escalation_id": esc.id, "process_id": esc.process_id,
                                                 "trace_id": signal.trace_id})
            on_commit()
        return JSONResponse(body, status_code=201 if created else 200)

    def _load_view(request: Request, esc_id: str, token: AgentToken) -> dict[str, Any]:
        with db.transaction() as s:
            esc = intake.get_for_token(s, esc_id, token)
            return escalation_view.view(s, esc, poll_url(esc.id))

    @app.get("/api/v1/escalations/{esc_id}", response_model=EscalationView)
    async def get_escalation(request: Request, esc_id: str,
                             wait: int = Query(0, ge=0, le=MAX_WAIT_S, description="long-poll up to N seconds"),
                             token: AgentToken = Depends(agent)):
        view = await run_in_threadpool(_load_view, request, esc_id, token)
        deadline = asyncio.get_running_loop().time() + wait
        while view["status"] == "pending" and asyncio.get_running_loop().time() < deadline:
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.5)
            view = await run_in_threadpool(_load_view, request, esc_id, token)
        return view

    @app.post("/api/v1/escalations/{esc_id}/cancel", response_model=EscalationView,
              responses={409: {"model": ErrorBody}})
    def cancel_escalation(request: Request, esc_id: str, token: AgentToken = Depends(agent)):
        with db.transaction() as s:
            esc = escalations.cancel(s, esc_id, token)
            view = escalation_view.view(s, esc, poll_url(esc.id))
        on_commit()
        return view

    @app.post("/api/v1/changelog", status_code=201)
    def record_action(record: ChangelogRecord, token: AgentToken = Depends(agent)):
        proc = registry.get(record.process_id)
        if proc is None:
            raise NotFound(f"unknown process {record.process_id!r}", field="process_id")
        if proc.id not in token.process_ids:
            raise Forbidden(f"this token is not scoped to process {proc.id!r}", field="process_id")
        entry = record.model_dump(mode="json")
        if record.timestamp is None:
            entry["timestamp"] = clock.iso(clock.now())
        else:
            try:
                entry["timestamp"] = clock.iso(_parse_time(record.timestamp))
            except ValueError:
                raise Invalid("timestamp must be ISO 8601 with a time zone", field="timestamp") from None
        entry["owner"] = record.owner or proc.raci.accountable or proc.raci.escalation or ""
        entry["tier"] = proc.tier
        with db.transaction() as s:
            stored = changelog.append(s, entry)
        return stored

    @app.get("/api/v1/changelog", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
    def read_changelog(process_id: str | None = None, since: str | None = None,
                       limit: int = Query(100, ge=1, le=1000), token: AgentToken = Depends(agent)):
        if process_id is not None and process_id not in token.process_ids:
            raise Forbidden(f"this token is not scoped to process {process_id!r}", field="process_id")
        try:
            since_dt = _parse_time(since) if since else None
        except ValueError:
            raise Invalid("since must be ISO 8601, e.g. 2026-04-26T10:00:00Z", field="since") from None
        pids = [process_id] if process_id else list(token.process_ids)
        with db.transaction() as s:
            entries = changelog.read(s, pids, since_dt, limit)
        body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        return Response(body, media_type="application/x-ndjson")

    @app.get("/api/v1/processes/{process_id}")
    def get_process(process_id: str, token: AgentToken = Depends(agent)):
        proc = registry.get(process_id)
        if proc is None:
            raise NotFound(f"unknown process {process_id!r}", field="process_id")
        if proc.id not in token.process_ids:
            raise Forbidden(f"this token is not scoped to process {proc.id!r}", field="process_id")
        with db.transaction() as s:
            state = processes.state_of(s, proc.id)
            open_count = processes.open_count(s, proc.id)
        paused = state.status == "paused"
        return {
            "id": proc.id,
            "name": proc.name,
            "tier": proc.tier,
            "channel": proc.channel,
            "status": "paused" if paused else "active",
            "paused_by": state.by,
            "paused_at": clock.iso(state.at),
            "paused_reason": state.reason,
            "raci": proc.raci.model_dump(mode="json"),
            "escalation_policy": proc.levels(),
            "allowed_tools": proc.allowed_tools,
            "open_escalations": open_count,
        }

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = is_current(db.engine)
        except Exception as e:  # readiness must answer, whatever the database does
            return error_response(503, "not_ready", f"database unreachable: {type(e).__name__}")
        if not current:
            return error_response(503, "not_ready", "database schema is behind; run `aopbot migrate`")
        return {"status": "ready"}

    if metrics is not None:
        @app.get("/metrics", response_class=PlainTextResponse)
        def prometheus():
            payload, content_type = metrics()
            return Response(payload, media_type=content_type)

    return app


class _Unauthorized(Exception):
    pass


def _parse_time(value: str) -> datetime:
    """ISO 8601 with a zone, as UTC; ValueError for anything else (including times UTC cannot hold)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("no time zone")
    try:
        return dt.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("out of range") from e
