"""Acceptance (issue 15, point 4): `pip install ./sdk` into a fresh virtualenv (no system site
packages) brings httpx and pydantic, and none of the bot's server dependencies; the SDK imports and
works there, and `aopbot-mcp` without the extra says which extra to install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.procs import ROOT

SERVER_ONLY = {"sqlalchemy", "slack-bolt", "slack-sdk", "alembic", "fastapi", "uvicorn", "psycopg", "apscheduler",
               "pydantic-settings", "prometheus-client", "rfc8785", "pyyaml", "mcp"}

SMOKE = """
import hashlib, hmac, json, sys, time
import httpx
from aopbot_client import AopClient, InvalidSignature, verify_callback

body = json.dumps({"id": "esc_1", "status": "approved", "tier": 2, "decision": "approved"}).encode()
ts = str(int(time.time()))
sig = "v1=" + hmac.new(b"whsec_x", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
assert verify_callback(body, {"X-Aopbot-Timestamp": ts, "X-Aopbot-Signature": sig}, "whsec_x").approved
answer = {"id": "esc_1", "status": "pending", "tier": 2, "poll_url": "http://aop/api/v1/escalations/esc_1"}
transport = httpx.MockTransport(lambda request: httpx.Response(201, json=answer))
with AopClient("http://aop", "aop_t", transport=transport) as aop:
    assert aop.escalate("refunds", "Refund $1").created
server_side = {"sqlalchemy", "slack_bolt", "slack_sdk", "fastapi", "bot"} & set(sys.modules)
assert not server_side, server_side
print("ok")
"""


def test_the_sdk_installs_alone_without_the_bots_dependencies(tmp_path):
    source = tmp_path / "sdk"  # a copy: building in place would leave build/ and *.egg-info in the tree
    shutil.copytree(ROOT / "sdk", source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr

    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True, timeout=120)
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"aopbot-client", "httpx", "pydantic"} <= installed
    assert not installed & SERVER_ONLY, sorted(installed & SERVER_ONLY)

    smoke = subprocess.run([str(python), "-c", SMOKE], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert smoke.stdout.strip() == "ok", smoke.stderr
    without_extra = subprocess.run([str(venv / "bin" / "aopbot-mcp")], capture_output=True, text=True,
                                   env={"AOP_URL": "http://aop", "AOP_TOKEN": "aop_t"}, timeout=60)
    assert without_extra.returncode != 0 and "pip install 'aopbot-client[mcp]'" in without_extra.stderr
