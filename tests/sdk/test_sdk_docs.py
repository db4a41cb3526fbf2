"""docs/sdk.md and the README's "For agent authors" stay true to the SDK: every public name and
every error is documented, the MCP tools listed are the server's, the MCP client configuration runs
the script the package installs, and the three-line integration runs."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib

import aopbot_client
from aopbot_client import AsyncAopClient
from aopbot_client.errors import _BY_STATUS
from aopbot_client.mcp_server import build_server
from tests.procs import ROOT

SDK_DOC = (ROOT / "docs" / "sdk.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
AGENT_AUTHORS = README.split("## For agent authors", 1)[1].split("\n## ", 1)[0]


def blocks(markdown: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", markdown, flags=re.S)


def test_every_public_name_and_error_is_documented():
    undocumented = [name for name in aopbot_client.__all__
                    if not name.startswith("_") and name not in ("Approval", "PolicyCheck", "EscalationFields",
                                                                 "RecordFields", "FieldError")
                    and f"`{name}" not in SDK_DOC]
    assert not undocumented, f"missing from docs/sdk.md: {undocumented}"
    for status, kind in _BY_STATUS.items():
        assert f"| {status} | `{kind.__name__}`" in SDK_DOC, f"{status} {kind.__name__} not in the error table"


def test_the_documented_mcp_tools_are_the_servers():
    async def listed() -> set[str]:
        async with AsyncAopClient("http://127.0.0.1:9", "aop_docs") as client:
            return {tool.name for tool in await build_server(client).list_tools()}

    tools = asyncio.run(listed())
    table = SDK_DOC.split("## The MCP server", 1)[1]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    assert documented == tools == {"request_approval", "record_action", "escalation_status", "who_owns"}
    assert all(f"`{tool}`" in AGENT_AUTHORS for tool in tools)


def test_the_mcp_client_configuration_runs_the_installed_script():
    scripts = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]["scripts"]
    for page in (SDK_DOC, AGENT_AUTHORS):
        config = json.loads(next(b for b in blocks(page, "json") if "mcpServers" in b))["mcpServers"]["aopbot"]
        assert config["command"] in scripts and scripts[config["command"]] == "aopbot_client.mcp_server:main"
        assert set(config["env"]) == {"AOP_URL", "AOP_TOKEN"}


def test_the_three_line_integration_runs(monkeypatch):
    monkeypatch.setenv("AOP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AOP_TOKEN", "aop_docs")
    snippet = next(b for b in blocks(AGENT_AUTHORS, "python") if "require_approval" in b)
    assert len([line for line in snippet.splitlines() if line.strip() and not line.startswith(" ")]) <= 5
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert callable(namespace["refund"]) and namespace["refund"].__name__ == "refund"
    namespace["aop"].close()
