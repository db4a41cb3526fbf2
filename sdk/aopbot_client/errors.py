"""What can go wrong, as exceptions an agent can catch by kind.

Two families:

- `AopError`: the API refused a request or could not be reached. Every refusal carries the HTTP
  `status`, the machine `code` (`error` in the body), the `message` and one `FieldError` per
  offending field, so an agent can point at what to fix.
- `ApprovalDenied`: the decorated tool did not run because no human approved it (rejected, expired,
  cancelled, or no decision in time). `str()` of it is a short message an LLM can act on.

And `InvalidSignature` for a callback that fails `verify_callback`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str  # a path into the request: "action.summary", "action.tools[1]", "process_id", "body"
    message: str


class AopError(Exception):
    """The API answered with an error (or, for `AopConnectionError`, did not answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 errors: list[FieldError] | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors = list(errors or [])
        self.retry_after = retry_after

    @property
    def fields(self) -> list[str]:
        """The offending fields, in the server's order."""
        return [e.field for e in self.errors]

    def __str__(self) -> str:
        head = f"{self.status} {self.code}: " if self.status else ""
        fields = "; ".join(e.field if e.message == self.message else f"{e.field}: {e.message}" for e in self.errors)
        return head + self.message + (f" [{fields}]" if fields else "")


class BadRequest(AopError):
    """400: the body could not be read at all."""


class Unauthorized(AopError):
    """401: no token, or an unknown or revoked one."""


class Forbidden(AopError):
    """403: the token is not scoped to that process (or did not raise that escalation)."""


class NotFound(AopError):
    """404: unknown process or escalation."""


class Conflict(AopError):
    """409: an idempotency key reused with a different body, or cancelling an escalation that ended otherwise."""


class ProcessRetired(AopError):
    """410: the process is retired."""


class BodyTooLarge(AopError):
    """413: the body is over the server's limit."""


class InvalidRequest(AopError):
    """422: the body does not fit the schema (`code` "invalid_request") or breaks a rule of the
    process (`code` "invalid": a tool outside allowed_tools, no rollback_plan at tier 3+)."""


class ProcessPaused(AopError):
    """423: the process's owner paused it. Do nothing new for it until it is resumed."""


class RateLimited(AopError):
    """429: over the process's rate limit; `retry_after` says how many seconds to wait."""


class ServerError(AopError):
    """5xx: the server failed or its database did not answer."""


class AopConnectionError(AopError):
    """The server could not be reached (connection refused, reset, timed out) within the retry deadline."""


_BY_STATUS: dict[int, type[AopError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: ProcessRetired,
    413: BodyTooLarge, 422: InvalidRequest, 423: ProcessPaused, 429: RateLimited,
}


def error_for(status: int, body: Any, retry_after: str | None = None) -> AopError:
    """The typed exception for an error answer in the API's one shape `{"error", "message", "errors"}`."""
    body = body if isinstance(body, dict) else {}
    errors = [FieldError(str(e.get("field", "")), str(e.get("message", "")))
              for e in body.get("errors") or [] if isinstance(e, dict)]
    try:
        after = float(retry_after) if retry_after is not None else None
    except ValueError:
        after = None
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else AopError)
    return kind(str(body.get("message") or f"HTTP {status}"), status=status, code=body.get("error"),
                errors=errors, retry_after=after)


class ApprovalDenied(Exception):
    """The decorated function did not run: nobody approved this call. Subclasses say why.

    `str()` is written for an LLM whose tool this was: what happened (`status`) and what to do next
    (`advice`)."""

    status = "not approved"
    advice = "Do not perform it; tell the user, or propose a different action."

    def __init_subclass__(cls, *, status: str | None = None, advice: str | None = None, **kw: Any):
        super().__init_subclass__(**kw)
        cls.status, cls.advice = status or cls.status, advice or cls.advice

    def __init__(self, escalation_id: str, *, summary: str, decided_by: str | None = None,
                 reason: str | None = None, escalation: Any = None):
        self.escalation_id = escalation_id
        self.summary = summary
        self.decided_by = decided_by
        self.reason = reason
        self.escalation = escalation  # the Escalation as last read
        super().__init__(self.llm_message())

    def llm_message(self) -> str:
        who = f" by {self.decided_by}" if self.decided_by and self.decided_by != "agent" else ""
        why = f" Reason: {self.reason}." if self.reason else ""
        return (f"Not done: the action {self.summary!r} was {self.status}{who} ({self.escalation_id}).{why} "
                f"{self.advice}")


class ApprovalRejected(ApprovalDenied, status="rejected",
                       advice="Do not perform it or retry it as is; tell the user, or propose a different action."):
    """A decider rejected it; `reason` is theirs."""


class ApprovalExpired(ApprovalDenied, status="not approved in time (expired)",
                      advice="Do not perform it; nobody said yes in time. Tell the user."):
    """Nobody decided before the escalation's deadline. Not a "no", but do not act."""


class ApprovalCancelled(ApprovalDenied, status="cancelled", advice="Do not perform it."):
    """The escalation was withdrawn (by this agent's token)."""


class ApprovalTimeout(ApprovalDenied, status="still waiting for a decision",
                      advice="Do not perform it yet; the request is still open. Try again later with the same "
                             "arguments."):
    """The decorator's own `timeout` passed with the escalation still open. It stays open: calling the
    function again with the same arguments resumes waiting on the same escalation."""


class ApprovalMismatch(ApprovalDenied, status="approved for a different action",
                       advice="Do not perform it; the approval does not cover this exact action. Ask again."):
    """The server's approved action is not the one this call would perform (its action_hash differs)."""


class AcknowledgedOnly(ApprovalDenied,
                       status="acknowledged, which is not an approval (tier 0-1 processes take no decisions)",
                       advice="Do not perform it under this approval; ask with tier=2 to require a decision."):
    """At tier 0-1 an escalation ends when someone acknowledges it: nobody approves at those tiers."""


class InvalidSignature(Exception):
    """A callback whose signature is missing, forged, made over another body, or too old."""


__all__ = [
    "AcknowledgedOnly", "AopConnectionError", "AopError", "ApprovalCancelled", "ApprovalDenied", "ApprovalExpired",
    "ApprovalMismatch", "ApprovalRejected", "ApprovalTimeout", "BadRequest", "BodyTooLarge", "Conflict",
    "FieldError", "Forbidden", "InvalidRequest", "InvalidSignature", "NotFound", "ProcessPaused", "ProcessRetired",
    "RateLimited", "ServerError", "Unauthorized", "error_for",
]
