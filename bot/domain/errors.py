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


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    code = "conflict"


class Invalid(DomainError):
    code = "invalid"


class Paused(DomainError):
    code = "process_paused"


class RateLimited(DomainError):
    code = "rate_limited"
