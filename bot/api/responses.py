"""The API's one error shape, and the HTTP status of each domain error (the domain has none)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from bot.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Paused, RateLimited, Revoked

# The domain's errors carry no HTTP codes; this is the one place that gives them theirs.
STATUS: dict[type[DomainError], int] = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 422, Paused: 423,
                                        RateLimited: 429, Revoked: 401}


def error_response(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": code, "message": message, "errors": errors or []}
    return JSONResponse(body, status_code=status, headers=headers)
