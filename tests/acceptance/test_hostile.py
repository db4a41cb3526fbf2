"""Acceptance (issue 6, points 5 and 6, and the rest): redaction, Slack retries, readiness, and a
schema-driven fuzz of the whole agent API over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.domain import escalations
from bot.ops.app import build_services, create_http_app
from bot.ops.db import Database
from bot.ops.migrate import upgrade
from tests.conftest import RunningServer, wait_for
from tests.helpers import escalation_messages

ROOT = Path(__file__).resolve().parents[2]


def test_redacted_inputs_never_reach_slack_but_stay_in_the_change_log(services, stub, agent):
    resp = agent.signal(inputs={"ticket_id": "123", "email": "jane.doe@example.com",
                                "card": {"last4": "4242", "brand": "visa"}})
    esc_id = resp.json()["id"]
    services.outbox.drain()
    escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
    services.outbox.drain()
    sent = json.dumps([c.args for c in stub.calls])
    assert "jane.doe@example.com" not in sent and '"4242"' not in sent and ": 4242" not in sent
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert "[redacted]" in json.dumps(thread.blocks) and "visa" in json.dumps(thread.blocks)
    entry = json.loads(agent.http.get("/api/v1/changelog").text.splitlines()[0])
    assert entry["inputs"]["email"] == "jane.doe@example.com" and entry["inputs"]["card"]["last4"] == "4242"


def test_a_slack_retry_of_an_event_is_not_acted_on_twice(stub, slack):
    event = {"type": "app_home_opened", "user": "U0ESCOWNER", "tab": "home", "channel": "D1"}
    assert slack.event(event).status_code == 200
    wait_for(lambda: stub.calls_to("views.publish"), what="the first delivery")
    retried = slack.event(event, extra_headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retried.status_code == 200
    import time

    time.sleep(0.3)  # give a wrongly-handled retry the chance to publish, so the assertion can fail
    assert len(stub.calls_to("views.publish")) == 1


def test_a_double_clicked_approval_is_acted_on_once(services, stub, slack, agent):
    from tests.helpers import click, ephemerals_to

    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    _, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    click(slack, stub, "U0ESCOWNER", "aop_approve", thread)
    wait_for(lambda: agent.get(esc_id)["status"] == "approved", what="approval")
    replies = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="the second click's answer")
    assert "Already approved by <@U0ESCOWNER>" in replies[0]
    assert len(agent.http.get("/api/v1/changelog").text.splitlines()) == 1


def test_readyz_reports_a_schema_behind_head(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0003")
    old = settings.model_copy(update={"database_url": url})
    with RunningServer(create_http_app(build_services(old, Database(url)))) as running:
        behind = httpx.get(running.url + "/readyz")
        assert behind.status_code == 503 and "aopbot migrate" in behind.json()["message"]
        upgrade(url)
        assert httpx.get(running.url + "/readyz").json() == {"status": "ready"}
        assert httpx.get(running.url + "/healthz").status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_no_server_error(server, agent):
    """Every operation of /openapi.json, fuzzed over real HTTP with a valid token: never a 5xx."""
    agent.signal()  # something to find
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
         "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {agent.token}",
         "--max-examples", "30", "--generation-deterministic",
         "--exclude-path", "/metrics", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
