"""Wire models of the agent API (docs/api.md, docs/changelog.md). Unknown fields are refused."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ShortText = str  # lengths are bounded by the request size limit and by Slack rendering


class _Strict(BaseModel):
    # strict: no 0 for false, no "5" for 5; the agent sends the type the field says
    model_config = ConfigDict(extra="forbid", strict=True)


MAX_DEPTH = 32  # JSON nesting; deeper is refused with a 422 naming the field
MAX_KEYS = 10_000  # keys and items in one field, all levels together
MAX_SAFE_INT = 2**53 - 1  # the largest integer every JSON reader keeps exactly


def storable(data: object, where: str) -> None:
    """Refuse what JSON, UTF-8 or PostgreSQL cannot keep (NaN/infinity, integers past 2^53, NUL
    characters, lone surrogates) and what no agent needs (nesting past MAX_DEPTH, more than MAX_KEYS items)."""
    seen = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:  # iterative: a hostile depth must not exhaust the recursion limit first
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where} holds NaN or infinity")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INT:
            # The change log hashes RFC 8785 JSON, whose numbers are doubles (I-JSON, RFC 7493).
            raise ValueError(f"{where} holds an integer beyond ±(2^53-1): send it as a string")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError(f"{where} holds a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{where} holds a lone surrogate, which is not text") from e
        elif isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                raise ValueError(f"{where} is nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)
            seen += len(children)
            if seen > MAX_KEYS:
                raise ValueError(f"{where} holds more than {MAX_KEYS} keys and items")
            stack += [(c, depth + 1) for c in children]


class _Storable(_Strict):
    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any, info) -> Any:
        storable(value.model_dump(mode="python") if isinstance(value, BaseModel) else value, info.field_name)
        return value


def callback_url_field(what: str) -> Any:
    return Field(
        default=None, max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+",
        json_schema_extra={"format": "uri"},
        description=f"Where {what} is POSTed: https:// (http:// only to a host in AOP_CALLBACK_ALLOW), no "
                    "credentials, a host that resolves to a public address (422 naming callback_url otherwise)")


def http_url(v: str | None) -> str | None:
    if v is None:
        return v
    from urllib.parse import urlsplit

    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return v


class Action(_Strict):
    summary: str = Field(min_length=1, description="What the agent wants to do, in one line.")
    tools: list[str] = Field(default_factory=list, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class PolicyCheck(_Strict):
    name: str = Field(min_length=1, max_length=200)
    passed: bool | None = None
    detail: str | None = None


class EscalationSignal(_Storable):
    process_id: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    action: Action
    policy_checks: list[PolicyCheck | str] = Field(default_factory=list, max_length=100)
    reason: str | None = Field(default=None, max_length=200)
    message: str | None = None
    tier: int | None = Field(default=None, ge=0, le=4)
    rollback_plan: str | dict[str, Any] | None = None
    expires_in_s: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    trace_id: str | None = Field(default=None, max_length=200)
    cost_usd: float | None = Field(default=None, ge=0, le=1_000_000,
                                   description="Model and tool spend of the step that led here, in US dollars")
    started_at: str | None = Field(default=None, max_length=64, json_schema_extra={"format": "date-time"},
                                   description="When the agent began this case (RFC 3339 with a zone): cycle time")
    callback_url: str | None = callback_url_field("the outcome")

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return http_url(v)

    @field_validator("started_at")
    @classmethod
    def _started_at(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from bot.ops import clock

        try:
            at = clock.parse_iso(v)
        except ValueError:
            raise ValueError("must be ISO 8601 with a time zone, e.g. 2026-04-26T10:40:00Z") from None
        if (at - clock.now()).total_seconds() > 300:
            raise ValueError("is in the future: when did the agent begin this case?")
        return v

    @field_validator("rollback_plan")
    @classmethod
    def _plan_not_blank(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            return None
        if isinstance(v, dict) and not v:
            return None
        return v


class EscalationCreated(BaseModel):
    id: str
    status: str
    tier: int
    poll_url: str


class Approval(BaseModel):
    user: str
    vote: Literal["approve", "reject"]
    at: str


class EscalationView(BaseModel):
    id: str
    process_id: str
    status: Literal["pending", "acknowledged", "approved", "rejected", "expired", "cancelled"]
    decision: str | None
    decided_by: str | None
    decided_at: str | None
    reason: str | None
    tier: int
    created_at: str
    expires_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    action_hash: str
    approvals: list[Approval]
    idempotency_key: str | None
    trace_id: str | None
    poll_url: str
    # paused: the owner stopped the process; a long-poll returns at once so the agent can stop too.
    process_status: Literal["active", "paused"] = "active"


class ChangelogRecord(_Storable):
    """An action the agent took without escalation (docs/changelog.md)."""

    process_id: str = Field(min_length=1, max_length=200)
    timestamp: str | None = None
    model: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    tools_invoked: list[str] = Field(default_factory=list)
    policy_checks: list[str] = Field(default_factory=list)
    decision: str = Field(min_length=1, max_length=200)
    human_escalation: bool = False  # strict: a JSON false, never 0 (Literal[False] would take 0)
    owner: str | None = None
    trace_id: str | None = Field(default=None, max_length=200)
    cost_usd: float | None = Field(default=None, ge=0, le=1_000_000,
                                   description="Model and tool spend of this action, in US dollars")
    action_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                    description="The action_hash of the approved escalation this action carries out")
    # Sampling QA: a reviewer's verdict on this action, if it is sampled (docs/api.md#qa-verdicts).
    callback_url: str | None = callback_url_field("a QA reviewer's verdict on this action")

    @field_validator("human_escalation")
    @classmethod
    def _not_escalated(cls, v: bool) -> bool:
        if v:
            raise ValueError("must be false: escalated actions reach the log through POST /api/v1/escalations")
        return v

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return http_url(v)


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    message: str
    errors: list[ErrorItem] = []


# -- the QA verdict callback (docs/api.md#qa-verdicts): what aopbot POSTs, documented as a webhook ----


class QaVerdictEntry(BaseModel):
    seq: int = Field(description="The recorded action's change-log seq")
    hash: str = Field(description="Its change-log hash")
    timestamp: str | None = Field(description="Its timestamp, as stored")
    decision: str | None = Field(description="What the agent recorded it did")
    trace_id: str | None


class QaVerdictReview(BaseModel):
    seq: int = Field(description="The verdict's own change-log seq (deduplicate on it)")
    hash: str


class QaVerdict(BaseModel):
    """A QA reviewer's verdict on a recorded action, POSTed to the record's callback_url, signed like
    an outcome (X-Aopbot-Timestamp, X-Aopbot-Signature)."""

    event: Literal["qa_review"]
    process_id: str
    verdict: Literal["ok", "wrong"] = Field(description="ok: Looks right; wrong: Wrong")
    decision: Literal["qa_ok", "qa_wrong"] = Field(description="The verdict's change-log decision")
    note: str | None = Field(description="The reviewer's note (a Wrong verdict's)")
    reviewed_by: str = Field(description="The reviewer's Slack user ID")
    reviewed_at: str
    entry: QaVerdictEntry
    review: QaVerdictReview
