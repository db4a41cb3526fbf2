"""The agent HTTP API (docs/api.md): FastAPI, pydantic-validated, every error naming its field."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.api.limits import BodyTooLarge
from bot.api.openapi import allowed_methods, document
from bot.api.responses import STATUS, error_response
from bot.api.schemas import (
    ChangelogRecord,
    ErrorBody,
    EscalationCreated,
    EscalationSignal,
    EscalationView,
    QaVerdict,
)
from bot.delivery import callback_address
from bot.domain import changelog, escalation_view, escalations, intake, processes, records, tokens
from bot.domain.errors import DomainError, Forbidden, Invalid, NotFound
from bot.domain.models import AgentToken
from bot.domain.registry import Registry
from bot.ops import clock
from bot.ops.db import Database
from bot.ops.migrate import is_current
from bot.ops.wakeups import FALLBACK_POLL_S, Wakeups

log = logging.getLogger("aopbot.api")

MAX_WAIT_S = 60


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
    callback_allow: frozenset[str] = frozenset(),
    wakeups: Wakeups | None = None,
    max_body_bytes: int = 1_048_576,
    on_commit: Callable[..., None] = lambda callbacks=True: None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    qa_key: bytes,
    not_ready: Callable[[], str | None] = lambda: None,
) -> FastAPI:
    waiting = wakeups or Wakeups()
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        """FastAPI's own refusals (a body that is not JSON, an unknown path) in the one error shape."""
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wrapped the size limit: let BodyLimit answer 413
            raise exc.__cause__
        field = "body" if exc.status_code == 400 else "path"
        code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first route of the path; list them all
            headers["Allow"] = allowed_methods(app, request.url.path)
        return error_response(exc.status_code, code, str(exc.detail), [{"field": field, "message": str(exc.detail)}],
                              headers)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError):
        headers = {}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
        return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, errors, headers)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError):
        log.error("database unavailable: %s: %s", type(exc).__name__, str(exc.orig or exc)[:300])
        return error_response(503, "database_unavailable", "the database is not reachable; retry shortly",
                              headers={"Retry-After": "5"})

    known = tokens.TokenCache(db)

    async def agent(request: Request) -> AgentToken:
        """On the event loop: a token seen within the second costs no thread hop and no round trip."""
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _Unauthorized("send Authorization: Bearer <token> (mint one with `aopbot token create`)")
        tok = known.cached(presented.strip()) or await run_in_threadpool(known.authenticate, presented.strip())
        if tok is None:
            raise _Unauthorized("unknown or revoked token")
        return tok

    @app.exception_handler(_Unauthorized)
    async def _unauth(_request: Request, exc: _Unauthorized):
        return error_response(401, "unauthorized", str(exc), [{"field": "Authorization", "message": str(exc)}],
                              headers={"WWW-Authenticate": "Bearer"})

    @app.post("/api/v1/escalations", status_code=201, response_model=EscalationCreated,
              responses={200: {"model": EscalationCreated, "description": "Repeated idempotency_key"},
                         409: {"model": ErrorBody},
                         410: {"model": ErrorBody, "description": "The process is retired"},
                         423: {"model": ErrorBody, "description": "The process is paused"}, 429: {"model": ErrorBody}})
    def create_escalation(signal: EscalationSignal, request: Request, token: AgentToken = Depends(agent)):
        refused = callback_address.refusal(signal.callback_url, callback_allow) if signal.callback_url else None
        if refused:
            raise Invalid(f"callback_url {refused}", field="callback_url")
        opened = intake.open_escalation(db, registry, token, signal)
        body = {"id": opened.id, "status": opened.status, "tier": opened.tier, "poll_url": poll_url(opened.id)}
        if opened.created:
            log.info("escalation opened", extra={"escalation_id": opened.id, "process_id": signal.process_id,
                                                 "trace_id": signal.trace_id})
            on_commit(callbacks=False)  # a page to send: the Slack lane only
        return JSONResponse(body, status_code=201 if opened.created else 200)

    def _load_view(request: Request, esc_id: str, token: AgentToken, recheck: bool = False) -> dict[str, Any]:
        return escalation_view.for_agent(db, esc_id, token, poll_url, recheck_token=recheck)

    @app.get("/api/v1/escalations/{esc_id}", response_model=EscalationView, operation_id="get_escalation")
    async def get_escalation(request: Request, esc_id: str,
                             wait: int = Query(0, ge=0, le=MAX_WAIT_S, description="long-poll up to N seconds"),
                             token: AgentToken = Depends(agent)):
        # Watch before the first read: a commit between that read and the wait still wakes us.
        async with waiting.watch(esc_id) as watch:
            view = await run_in_threadpool(_load_view, request, esc_id, token)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while escalation_view.still_waiting(view) and (remaining := deadline - loop.time()) > 0:
                if await request.is_disconnected():
                    break
                # Woken by the commit in this process; another replica's decision (or a token revoked
                # with the CLI) is seen by the slow poll.
                await watch.changed(min(remaining, FALLBACK_POLL_S))
                view = await run_in_threadpool(_load_view, request, esc_id, token, True)
        return view

    @app.post("/api/v1/escalations/{esc_id}/cancel", response_model=EscalationView, operation_id="cancel_escalation",
              responses={409: {"model": ErrorBody}})
    def cancel_escalation(request: Request, esc_id: str, token: AgentToken = Depends(agent)):
        escalations.cancel(db, esc_id, token)
        on_commit()
        return escalation_view.for_agent(db, esc_id, token, poll_url)

    @app.post("/api/v1/changelog", status_code=201,
              responses={410: {"model": ErrorBody, "description": "The process is retired"},
                         423: {"model": ErrorBody, "description": "The process is paused"}})
    def record_action(record: ChangelogRecord, token: AgentToken = Depends(agent)):
        refused = callback_address.refusal(record.callback_url, callback_allow) if record.callback_url else None
        if refused:
            raise Invalid(f"callback_url {refused}", field="callback_url")
        return records.record_action(db, registry, token, record, qa_key=qa_key,
                                      on_sampled=lambda: on_commit(callbacks=False))  # its QA card

    @app.webhooks.post("qa_review")
    def qa_review(verdict: QaVerdict):
        """Sent to a recorded action's callback_url when a QA reviewer gives it a verdict
        (docs/api.md#qa-verdicts); reply 2xx."""

    @app.get("/api/v1/changelog", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
    def read_changelog(process_id: str | None = None,
                       since: str | None = Query(None, json_schema_extra={"format": "date-time"},
                                                 description="entries at or after this time (RFC 3339, with a zone)"),
                       limit: int = Query(100, ge=1, le=1000), token: AgentToken = Depends(agent)):
        if process_id is not None and process_id not in token.process_ids:
            raise Forbidden(f"this token is not scoped to process {process_id!r}", field="process_id")
        try:
            since_dt = clock.parse_iso(since.upper()) if since is not None else None
        except ValueError:
            raise Invalid("since must be ISO 8601, e.g. 2026-04-26T10:00:00Z", field="since") from None
        pids = [process_id] if process_id else list(token.process_ids)
        with db.transaction() as s:
            entries = changelog.read(s, pids, since_dt, limit)
        body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        return Response(body, media_type="application/x-ndjson")

    @app.get("/api/v1/processes/{process_id}", operation_id="get_process")
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
            "capability": proc.capability,
            "blast_radius": proc.blast_radius,
            "rollback": proc.rollback,
            "stage": proc.stage,
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
        if why := not_ready():
            return error_response(503, "not_ready", why)
        return {"status": "ready"}

    if metrics is not None:
        @app.get("/metrics", response_class=PlainTextResponse)
        def prometheus():
            payload, content_type = metrics()
            return Response(payload, media_type=content_type)

    document(app)
    return app


class _Unauthorized(Exception):
    pass
