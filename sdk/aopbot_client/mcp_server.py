"""`aopbot-mcp`: aopbot for any MCP-capable agent, over stdio, configured by AOP_URL and AOP_TOKEN.

Tools: request_approval (blocks until a human decided, or a timeout), record_action,
escalation_status and who_owns. Each answers in text a model can read and in structured content.
Needs the extra: `pip install 'aopbot-client[mcp]'`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from pydantic import BaseModel

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, TextContent
except ModuleNotFoundError as missing:  # installed without the extra
    raise SystemExit(f"aopbot-mcp needs the mcp extra: pip install 'aopbot-client[mcp]' ({missing})") from None

from aopbot_client.approval import derived_key
from aopbot_client.client import AsyncAopClient
from aopbot_client.errors import AopError
from aopbot_client.models import ChangelogEntry, Escalation, EscalationFields, Process, RecordFields

MAX_WAIT_S = 3600
DEFAULT_WAIT_S = 300

INSTRUCTIONS = """aopbot hands decisions an agent may not take alone to a named human in Slack.
Before any action outside what you may do alone (a refund, a deploy, a customer-facing change), call
request_approval with the process id and a one-line summary, and act only if it answers `approved`,
exactly as described. After acting on your own, call record_action. who_owns tells who is
accountable for a process and who gets paged."""


def _result(text: str, data: BaseModel) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=data.model_dump(mode="json", exclude_none=True))


def outcome_text(esc: Escalation, waited_s: float | None = None) -> str:
    """What an escalation's state means for the agent, in one or two sentences."""
    who = f" by {esc.decided_by}" if esc.decided_by and esc.decided_by != "agent" else ""
    why = f" Reason: {esc.reason}." if esc.reason else ""
    match esc.decision:
        case "approved":
            return f"approved{who} ({esc.id}). Go ahead with exactly the action you described, nothing more."
        case "rejected":
            return f"rejected{who} ({esc.id}).{why} Do not perform the action."
        case "expired":
            return f"expired ({esc.id}): nobody decided in time. Do not perform the action."
        case "cancelled":
            return f"cancelled ({esc.id}). Do not perform the action."
        case "acknowledged":
            return f"acknowledged{who} ({esc.id}). The owner has seen it; no approval is given at this tier."
    paused = " The process is paused by its owner: do nothing new for it." if esc.process_status == "paused" else ""
    after = f" after {waited_s:.0f} s" if waited_s is not None else ""
    return (f"{esc.status}{after} ({esc.id}): no decision yet. Do not act; call escalation_status with "
            f"escalation_id={esc.id!r} to check again.{paused}")


def _refused(e: AopError) -> ToolError:
    return ToolError(str(e))  # the status, the code, the message and each offending field


def build_server(client: AsyncAopClient) -> MCPServer:
    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await client.aclose()

    server = MCPServer("aopbot", instructions=INSTRUCTIONS, lifespan=lifespan)

    @server.tool()
    async def request_approval(
        process_id: str, summary: str, ctx: Context, tools: list[str] | None = None,
        params: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None, message: str | None = None,
        reason: str | None = None, rollback_plan: str | None = None, tier: int | None = None,
        model: str | None = None, idempotency_key: str | None = None, wait_s: int = DEFAULT_WAIT_S,
    ) -> Annotated[CallToolResult, Escalation]:
        """Ask the process's human owner to approve an action, and wait for the decision.

        summary: the action in one line ("Refund $120 on ticket 123"); tools: the tools it will use;
        params: its exact parameters. The approval covers exactly this action. Blocks until someone
        decides or wait_s seconds pass (default 300, at most 3600); then the answer says `pending`
        and escalation_status(escalation_id) checks again. The same request again (same process,
        summary, tools and params) returns the same escalation instead of paging twice. Act only on
        `approved`."""
        fields: EscalationFields = {"tools": tools or [], "params": params or {}}
        optional = {"inputs": inputs, "message": message, "reason": reason, "rollback_plan": rollback_plan,
                    "tier": tier, "model": model}
        fields.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
        fields["idempotency_key"] = idempotency_key or derived_key(
            process_id, "request_approval", {"summary": summary, "tools": fields["tools"], "params": fields["params"]})
        limit = max(0, min(wait_s, MAX_WAIT_S))
        started = time.monotonic()
        try:
            esc = await client.escalate(process_id, summary, **fields)
            while True:
                waited = time.monotonic() - started
                esc = await client.wait(esc.id, timeout=min(60.0, max(0.0, limit - waited)))
                waited = time.monotonic() - started
                if esc.decided or waited >= limit:
                    break
                await ctx.report_progress(math.floor(waited), limit, f"waiting for a decision on {esc.id}")
        except AopError as e:
            raise _refused(e) from None
        return _result(outcome_text(esc, None if esc.decided else time.monotonic() - started), esc)

    @server.tool()
    async def escalation_status(escalation_id: str, wait_s: int = 0) -> Annotated[CallToolResult, Escalation]:
        """The state of an escalation (pending, approved, rejected, expired, cancelled); with wait_s,
        wait up to that many seconds (at most 3600) for its decision."""
        try:
            esc = await client.wait(escalation_id, timeout=max(0, min(wait_s, MAX_WAIT_S)))
        except AopError as e:
            raise _refused(e) from None
        return _result(outcome_text(esc), esc)

    @server.tool()
    async def record_action(
        process_id: str, decision: str, tools_invoked: list[str] | None = None,
        inputs: dict[str, Any] | None = None, policy_checks: list[str] | None = None, model: str | None = None,
        action_hash: str | None = None, trace_id: str | None = None, cost_usd: float | None = None,
    ) -> Annotated[CallToolResult, ChangelogEntry]:
        """Write an action you took on your own (without asking) to the process's change log.

        decision: what you did, in at most 200 characters ("refunded $20 on ticket 124"). After an
        approved request_approval, pass its action_hash."""
        given = {"tools_invoked": tools_invoked, "inputs": inputs, "policy_checks": policy_checks, "model": model,
                 "action_hash": action_hash, "trace_id": trace_id, "cost_usd": cost_usd}
        fields: RecordFields = {k: v for k, v in given.items() if v is not None}  # type: ignore[assignment]
        try:
            entry = await client.record(process_id, decision, **fields)
        except AopError as e:
            raise _refused(e) from None
        return _result(f"recorded in the change log of {process_id} as entry {entry.seq}.", entry)

    @server.tool()
    async def who_owns(process_id: str) -> Annotated[CallToolResult, Process]:
        """Who owns a process: the escalation owner (paged), the accountable owner, the RACI, its
        tier, allowed tools and whether it is paused."""
        try:
            proc = await client.process(process_id)
        except AopError as e:
            raise _refused(e) from None
        return _result(ownership_text(proc), proc)

    return server


def ownership_text(proc: Process) -> str:
    raci = proc.raci
    paging = ", then ".join(
        ", ".join(level.notify) + (f" after {level.after // 60} min" if level.after else "")
        for level in proc.escalation_policy)
    lines = [
        f"{proc.name} ({proc.id}), tier {proc.tier}, {proc.status}"
        + (f" (paused by {proc.paused_by}: {proc.paused_reason})" if proc.status == "paused" else "") + ".",
        f"Escalation owner (paged): {raci.escalation or 'none'}. Paging: {paging or 'none'}.",
        f"Accountable: {raci.accountable or 'none'}. Responsible: {', '.join(raci.responsible) or 'none'}. "
        f"Consulted: {', '.join(raci.consulted) or 'none'}. Informed: {', '.join(raci.informed) or 'none'}.",
        "Allowed tools: " + (", ".join(proc.allowed_tools) if proc.allowed_tools is not None else "any") + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    try:
        client = AsyncAopClient()
    except ValueError as e:
        print(f"aopbot-mcp: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    server = build_server(client)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line on stderr per poll
    server.run("stdio")


if __name__ == "__main__":
    main()
