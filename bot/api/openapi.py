"""What /openapi.json says beyond the routes themselves: the 400 every JSON body may get, the links
from a created escalation to the operations that use it (so a client, or schemathesis, can follow
them), and the methods a path allows (a 405's Allow header)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Match

MALFORMED = {"description": "The body is not JSON (`malformed_json`, field `body`)",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}

# From POST /api/v1/escalations: the escalation it created, and the process it was raised for.
ESCALATION_LINKS = {
    "GetEscalation": {"operationId": "get_escalation", "parameters": {"esc_id": "$response.body#/id"},
                      "description": "Read (or long-poll) the escalation just raised"},
    "CancelEscalation": {"operationId": "cancel_escalation", "parameters": {"esc_id": "$response.body#/id"},
                         "description": "Cancel it (its agent only)"},
    "GetProcess": {"operationId": "get_process", "parameters": {"process_id": "$request.body#/process_id"},
                   "description": "The process it was raised for"},
}


def allowed_methods(app: FastAPI, path: str) -> str:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({"type": "http", "path": path, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def document(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                           webhooks=app.webhooks.routes)
        for path, ops in spec.get("paths", {}).items():
            for method, op in ops.items():
                if "requestBody" in op:
                    op["responses"].setdefault("400", MALFORMED)
                if (path, method) == ("/api/v1/escalations", "post"):
                    for status in ("200", "201"):
                        op["responses"][status]["links"] = ESCALATION_LINKS
        app.openapi_schema = spec
        return spec

    app.openapi = schema  # type: ignore[method-assign]
