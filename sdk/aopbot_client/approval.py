"""`require_approval`: a tool function that runs only once a human approved the exact call.

For each call: the call's arguments become `action.params`; the idempotency key is derived from the
process, the function and those arguments, so an agent that crashes and calls again resumes the
same escalation instead of paging twice, and different arguments are a different escalation (an
approval never covers another action). The function runs only on `approved`, and only if the
approved `action_hash` is the one of this call; what it then did is recorded in the change log with
that hash. Any other outcome raises an `ApprovalDenied`.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from aopbot_client import _flows, errors
from aopbot_client._flows import Context, Flow
from aopbot_client.models import Escalation, EscalationFields, action_hash, canonical

log = logging.getLogger("aopbot_client")

DENIALS: dict[str, type[errors.ApprovalDenied]] = {
    "rejected": errors.ApprovalRejected, "expired": errors.ApprovalExpired, "cancelled": errors.ApprovalCancelled,
    "acknowledged": errors.AcknowledgedOnly,
}
MAX_DECISION = 200  # the change log's limit on `decision`


def call_arguments(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults filled in, as JSON values (a method's `self`
    or `cls` left out; `**kwargs` merged in)."""
    sig = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    first = next(iter(sig.parameters), None)
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if name == first and name in ("self", "cls"):
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = list(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
    try:
        return to_jsonable_python(out)
    except PydanticSerializationError as e:
        raise TypeError(f"the arguments of {fn.__qualname__} must be JSON-serialisable to be shown for "
                        f"approval: {e}") from None


def derived_key(process_id: str, name: str, arguments: dict[str, Any]) -> str:
    """One key per process, function and canonical arguments."""
    digest = hashlib.sha256(canonical({"process_id": process_id, "function": name, "arguments": arguments})
                            .encode("utf-8")).hexdigest()
    return f"sdk-{name[:100]}-{digest[:40]}"


def _value(v: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    return v(*args, **kwargs) if callable(v) else v


@dataclass(frozen=True)
class ApprovalSpec:
    """What `require_approval(...)` was given."""

    process_id: str
    summary: str | Callable[..., str]
    tools: tuple[str, ...] = ()
    idempotency_key: Callable[..., str] | None = None
    timeout: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # escalation fields, or callables of the call's arguments

    def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Call:
        arguments = call_arguments(fn, args, kwargs)
        summary = str(_value(self.summary, args, kwargs))
        key = (self.idempotency_key(*args, **kwargs) if self.idempotency_key is not None
               else derived_key(self.process_id, fn.__qualname__, arguments))
        given = {name: _value(v, args, kwargs) for name, v in self.fields.items()}  # each may be a callable too
        fields: EscalationFields = {**given, "tools": list(self.tools), "params": arguments,  # type: ignore[typeddict-item]
                                    "idempotency_key": key}
        return Call(self, summary, arguments, fields)


@dataclass(frozen=True)
class Call:
    """One call of a decorated function: the action it asks approval for."""

    spec: ApprovalSpec
    summary: str
    arguments: dict[str, Any]
    fields: EscalationFields

    @property
    def action_hash(self) -> str:
        return action_hash(self.summary, list(self.spec.tools), self.arguments)

    def approval(self, ctx: Context) -> Flow[Escalation]:
        """Escalate (or find the escalation a previous attempt opened), wait, and return it approved;
        raise an `ApprovalDenied` for any other ending."""
        opened = yield from _flows.escalate(ctx, self.spec.process_id, self.summary, self.fields)
        log.info("escalation %s %s for %r; waiting for a decision", opened.id,
                 "opened" if opened.created else "resumed", self.summary)
        esc = yield from _flows.wait(ctx, opened.id, self.spec.timeout)
        if not esc.decided:
            raise self.denied(errors.ApprovalTimeout, esc)
        if esc.decision != "approved":
            raise self.denied(DENIALS.get(esc.decision or "", errors.ApprovalDenied), esc)
        if esc.action_hash != self.action_hash:
            raise self.denied(errors.ApprovalMismatch, esc)
        return esc

    def denied(self, kind: type[errors.ApprovalDenied], esc: Escalation) -> errors.ApprovalDenied:
        return kind(esc.id, summary=self.summary, decided_by=esc.decided_by, reason=esc.reason, escalation=esc)

    def done(self, ctx: Context, esc: Escalation) -> Flow[None]:
        """Write what the function did to the change log, under the approved action_hash. It has
        already run, so a record the server refuses is logged, never raised: raising would invite the
        caller to run it again."""
        fields = {"tools_invoked": list(self.spec.tools), "inputs": self.arguments, "action_hash": esc.action_hash}
        for name in ("model", "trace_id"):
            if name in self.fields:
                fields[name] = self.fields[name]  # type: ignore[literal-required]
        try:
            yield from _flows.record(ctx, self.spec.process_id, self.summary[:MAX_DECISION], fields)  # type: ignore[arg-type]
        except errors.AopError as e:
            log.error("%s ran after approval %s, but its change-log record failed: %s", self.summary, esc.id, e)
