"""Acceptance (issue 15, point 3): the `mcp` package's own client, over stdio, starts `aopbot-mcp`,
lists its four tools, calls request_approval and receives `approved` after a signed click; the other
tools answer in text and structured content too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

AOPBOT_MCP = Path(sys.executable).parent / "aopbot-mcp"  # the console script `pip install aopbot-client[mcp]` makes


def text_of(result) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


def test_an_mcp_client_lists_the_tools_and_gets_approved_after_a_click(served, tmp_path):
    assert AOPBOT_MCP.exists(), "aopbot-mcp is not installed next to this Python"
    params = StdioServerParameters(command=str(AOPBOT_MCP), env={**served.env, "PATH": os.environ["PATH"]})

    async def session() -> None:
        with (tmp_path / "mcp.stderr").open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
                assert set(tools) == {"request_approval", "record_action", "escalation_status", "who_owns"}
                assert tools["request_approval"].input_schema["required"] == ["process_id", "summary"]

                owners = await mcp.call_tool("who_owns", {"process_id": "refunds"})
                assert not owners.is_error and "Escalation owner (paged): U0ESCOWNER" in text_of(owners)
                assert owners.structured_content["raci"]["accountable"] == "U0DRI"

                async def click_when_paged() -> None:
                    esc_id = await anyio.to_thread.run_sync(served.paged, 1)
                    await anyio.to_thread.run_sync(served.approve, esc_id)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(click_when_paged)
                    approved = await mcp.call_tool("request_approval", {
                        "process_id": "refunds", "summary": "Refund $30 on ticket 77", "tools": ["billing.refund"],
                        "params": {"ticket_id": "77", "amount": 30}, "wait_s": 120})
                assert not approved.is_error, text_of(approved)
                outcome = approved.structured_content
                assert outcome["status"] == "approved" and outcome["decided_by"] == "U0ESCOWNER"
                assert text_of(approved).startswith("approved by U0ESCOWNER")

                status = await mcp.call_tool("escalation_status", {"escalation_id": outcome["id"]})
                assert status.structured_content["decision"] == "approved"

                recorded = await mcp.call_tool("record_action", {
                    "process_id": "refunds", "decision": "refunded $30 on ticket 77",
                    "tools_invoked": ["billing.refund"], "action_hash": outcome["action_hash"]})
                assert not recorded.is_error, text_of(recorded)
                assert recorded.structured_content["action_hash"] == outcome["action_hash"]

                refused = await mcp.call_tool("record_action", {"process_id": "refunds", "decision": "ran rm -rf",
                                                                "tools_invoked": ["shell.exec"]})
                assert refused.is_error and "shell.exec" in text_of(refused) and "tools_invoked[0]" in text_of(refused)

    anyio.run(session)
