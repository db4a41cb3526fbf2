"""Errors the domain raises for what a caller asked wrongly; each names the field at fault.

They carry no HTTP status: the API maps each class to its status code (bot/api.py), so the domain
stays usable from Slack handlers, the CLI and jobs alike.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra


def _kind(name: str, code: str, meaning: str) -> type[DomainError]:
    return type(name, (DomainError,), {"code": code, "__doc__": meaning, "__module__": __name__})


NotFound = _kind("NotFound", "not_found", "No such process or escalation.")
Forbidden = _kind("Forbidden", "forbidden",
                  "The caller may not touch this (a token scoped to other processes, another agent's escalation).")
Conflict = _kind("Conflict", "conflict",
                 "The request contradicts what is stored (a reused idempotency key, an escalation already ended).")
Invalid = _kind("Invalid", "invalid",
                "Well-formed but against the process's rules (a tool outside allowed_tools, no rollback plan).")
Revoked = _kind("Revoked", "unauthorized", "The token was revoked while its request waited.")
Retired = _kind("Retired", "process_retired",
                "The process is retired (registry stage: retired): it takes no new signals or records.")
Paused = _kind("Paused", "process_paused", "The process is paused by its owner: nothing new is accepted.")
RateLimited = _kind("RateLimited", "rate_limited",
                    "Over the process's signals per minute; extra['retry_after'] says when to come back.")
