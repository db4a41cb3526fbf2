"""The API's one error shape, and the HTTP status of each domain error (the domain has none)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from bot.domain import errors as e

# The domain's errors carry no HTTP codes; this is the one place that gives them theirs.
STATUS: dict[type[e.DomainError], int] = {e.NotFound: 404, e.Forbidden: 403, e.Conflict: 409, e.Invalid: 422,
                                          e.Paused: 423, e.Retired: 410, e.RateLimited: 429, e.Revoked: 401}


def error_response(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": code, "message": message, "errors": errors or []}
    return JSONResponse(body, status_code=status, headers=headers)
