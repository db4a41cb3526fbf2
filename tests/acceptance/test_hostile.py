"""Acceptance (issue 6, points 5 and 6, and the rest): redaction, Slack retries, readiness, and a
schema-driven fuzz of the whole agent API over HTTP."""

from __future__ import annotations

import json
import os
import re
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
def test_schemathesis_all_checks_and_stateful_links_find_nothing(server, agent):
    """Every operation of /openapi.json, fuzzed over real HTTP with a valid token, every check and
    every phase, including the stateful one that follows the documented links (create → read →
    cancel): no 5xx, no undocumented status, nothing the schema allows refused without a documented
    reason (tests/schemathesis.toml), nothing it forbids accepted."""
    agent.signal()  # something to find
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", "tests/schemathesis.toml", "run",
         f"{server.url}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {agent.token}",
         "--max-examples", "20", "--generation-deterministic", "--exclude-path", "/metrics", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.st_hooks"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "✅ Stateful" in result.stdout
    links = re.search(r"API Links:\s+(\d+) covered", result.stdout)
    assert links and int(links.group(1)) >= 1, "the stateful phase followed no link"


def test_the_schema_documents_what_the_server_enforces(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    since = next(p for p in spec["paths"]["/api/v1/changelog"]["get"]["parameters"] if p["name"] == "since")
    assert since["schema"]["format"] == "date-time"
    callback = spec["components"]["schemas"]["EscalationSignal"]["properties"]["callback_url"]
    assert callback["format"] == "uri" and callback["anyOf"][0]["pattern"].startswith("^[Hh][Tt][Tt][Pp][Ss]?://")
    for path, op in (("/api/v1/escalations", "post"), ("/api/v1/changelog", "post")):
        assert "400" in spec["paths"][path][op]["responses"]
    links = spec["paths"]["/api/v1/escalations"]["post"]["responses"]["201"]["links"]
    assert {k: v["operationId"] for k, v in links.items()} == {
        "GetEscalation": "get_escalation", "CancelEscalation": "cancel_escalation", "GetProcess": "get_process"}
    resp = httpx.request("OPTIONS", server.url + "/api/v1/changelog")
    assert resp.status_code == 405 and set(resp.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert httpx.get(server.url + "/api/v1/changelog?since=", headers={"Authorization": "Bearer x"}).status_code == 401


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize("depth", [33, 300])
def test_deep_nesting_is_a_422_naming_the_field_not_a_500(agent, depth):
    resp = agent.signal(inputs=nested(depth))
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "inputs" and "nested deeper than 32" in resp.text
    record = {"process_id": "refunds", "model": "m", "decision": "done", "inputs": nested(depth)}
    resp = agent.http.post("/api/v1/changelog", json=record)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "inputs"
    assert agent.signal(inputs=nested(32)).status_code == 201  # the limit itself is fine


def test_json_too_deep_for_any_parser_is_a_422(agent):
    inputs = '{"k":' * 20000 + "1" + "}" * 20000
    body = '{"process_id": "refunds", "action": {"summary": "s"}, "inputs": ' + inputs + "}"
    resp = agent.http.post("/api/v1/escalations", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["errors"][0]["field"] in ("body", "inputs")


def test_too_many_keys_is_a_422(agent):
    resp = agent.signal(action={"summary": "s", "params": {f"k{i}": i for i in range(10_001)}})
    assert resp.status_code == 422 and "more than 10000" in resp.text


@pytest.mark.parametrize("field, value", [("human_escalation", 0), ("human_escalation", "false")])
def test_types_are_strict(agent, field, value):
    record = {"process_id": "refunds", "model": "m", "decision": "done", field: value}
    resp = agent.http.post("/api/v1/changelog", json=record)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field
    assert agent.signal(tier="2").status_code == 422  # a number, not a string


def test_a_chunked_body_over_the_limit_gets_413(services, agent):
    limit = services.settings.aop_max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    resp = agent.http.post("/api/v1/escalations", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("metadata", ["not json", '{"c": "C0REFUNDS"}', '["e"]', ""])
def test_a_malformed_reject_form_is_answered_not_a_500(slack, metadata):
    from bot.surfaces import blocks
    from tests.slack_requests import view_submission

    values = {blocks.REASON_BLOCK: {blocks.REASON_INPUT: {"type": "plain_text_input", "value": "no"}}}
    resp = slack.interaction(view_submission("U0ESCOWNER", blocks.REJECT_MODAL, metadata, values))
    assert resp.status_code == 200
    assert resp.json()["response_action"] == "errors" and "click Reject again" in resp.text


def test_an_integer_no_json_reader_keeps_exactly_is_a_422_naming_the_field(agent):
    """The change log is hashed as RFC 8785 JSON, whose numbers are doubles: 2^53 + 1 cannot be kept."""
    resp = agent.signal(inputs={"order": 2**53 + 1})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "inputs", resp.text
    assert "send it as a string" in resp.text
    record = {"process_id": "refunds", "model": "m", "decision": "done", "inputs": {"n": -(2**60)}}
    assert agent.http.post("/api/v1/changelog", json=record).json()["errors"][0]["field"] == "inputs"
    assert agent.signal(inputs={"order": 2**53 - 1, "big": 1e300}).status_code == 201
