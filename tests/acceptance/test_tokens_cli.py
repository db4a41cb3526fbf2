"""`aopbot token create|list|revoke`: printed once, stored hashed, scoped, revocable at once."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import text

from tests.conftest import wait_for
from tests.procs import aopbot


def test_token_lifecycle_through_the_cli(settings, server, db):
    env = {"DATABASE_URL": settings.database_url, "AOP_REGISTRY": settings.aop_registry}
    created = aopbot("token", "create", "--process", "refunds", "--name", "refund-agent", env=env)
    assert created.returncode == 0, created.stderr
    token = re.search(r"token: (aop_\S+)", created.stdout).group(1)
    token_id = re.search(r"token id (\d+)", created.stdout).group(1)
    assert re.search(r"callback signing secret: whsec_\S+", created.stdout)

    with db.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM agent_tokens")) for v in row)
    assert token not in stored  # only the hash is kept

    listed = aopbot("token", "list", env=env)
    assert "refund-agent" in listed.stdout and token not in listed.stdout and "active" in listed.stdout

    headers = {"Authorization": f"Bearer {token}"}
    body = {"process_id": "refunds", "action": {"summary": "Refund $1", "tools": ["billing.refund"]}}
    assert httpx.post(server.url + "/api/v1/escalations", json=body, headers=headers).status_code == 201
    other = dict(body, process_id="deploys", rollback_plan="revert")
    assert httpx.post(server.url + "/api/v1/escalations", json=other, headers=headers).status_code == 403

    revoked = aopbot("token", "revoke", token_id, env=env)
    assert revoked.returncode == 0
    # A valid token is trusted for a second without a database read: revocation lands within it.
    wait_for(lambda: httpx.post(server.url + "/api/v1/escalations", json=body, headers=headers).status_code == 401,
             timeout=10, what="the revoked token refused")
    assert "revoked" in aopbot("token", "list", env=env).stdout


def test_token_for_an_unknown_process_is_refused(settings):
    env = {"DATABASE_URL": settings.database_url, "AOP_REGISTRY": settings.aop_registry}
    result = aopbot("token", "create", "--process", "nope", env=env)
    assert result.returncode == 1 and "unknown process" in result.stderr
