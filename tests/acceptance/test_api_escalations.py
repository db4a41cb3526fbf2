"""Acceptance (issue 2, point 4): every status code of POST /api/v1/escalations, and no 5xx for any body."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain import tokens
from bot.domain.models import ProcessState
from bot.ops import clock

SIGNAL = {"process_id": "refunds", "action": {"summary": "Refund $120", "tools": ["billing.refund"]}}


def field_errors(resp: httpx.Response) -> list[str]:
    return [e["field"] for e in resp.json()["errors"]]


def test_201_created_and_pollable(agent):
    resp = agent.signal(**SIGNAL)
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"id", "status", "tier", "poll_url"}
    assert agent.get(body["id"])["status"] == "pending"


def test_200_for_repeated_idempotency_key_and_409_for_a_changed_body(agent):
    first = agent.signal(**SIGNAL, idempotency_key="run-1-step-1")
    again = agent.signal(**SIGNAL, idempotency_key="run-1-step-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    changed = dict(SIGNAL, action={"summary": "Refund $999", "tools": ["billing.refund"]})
    conflict = agent.signal(**changed, idempotency_key="run-1-step-1")
    assert conflict.status_code == 409
    assert field_errors(conflict) == ["idempotency_key"]


def test_401_without_with_wrong_and_with_revoked_token(server, agent, db):
    anon = httpx.post(server.url + "/api/v1/escalations", json=SIGNAL)
    assert anon.status_code == 401 and field_errors(anon) == ["Authorization"]
    wrong = httpx.post(server.url + "/api/v1/escalations", json=SIGNAL,
                       headers={"Authorization": "Bearer aop_not-a-real-token"})
    assert wrong.status_code == 401
    with db.transaction() as s:
        tokens.revoke(s, agent.token_id)
    assert agent.signal(**SIGNAL).status_code == 401


def test_403_token_not_scoped_to_process(make_agent):
    other = make_agent(processes=["deploys"])
    resp = other.signal(**SIGNAL)
    assert resp.status_code == 403 and field_errors(resp) == ["process_id"]


def test_404_unknown_process(agent):
    resp = agent.signal(process_id="no_such_process", action={"summary": "x"})
    assert resp.status_code == 404 and field_errors(resp) == ["process_id"]


@pytest.mark.parametrize(("body", "field"), [
    ({"process_id": "refunds"}, "action"),
    ({"process_id": "refunds", "action": {"summary": ""}}, "action.summary"),
    ({"process_id": "refunds", "action": {"summary": "   "}}, "action.summary"),
    ({"process_id": "refunds", "action": {"summary": "x"}, "colour": "red"}, "colour"),
    ({"process_id": "refunds", "action": {"summary": "x", "tools": "billing.refund"}}, "action.tools"),
    ({"process_id": "refunds", "action": {"summary": "x"}, "tier": 7}, "tier"),
    ({"process_id": "refunds", "action": {"summary": "x"}, "expires_in_s": 0}, "expires_in_s"),
    ({"process_id": "refunds", "action": {"summary": "x"}, "callback_url": "ftp://x"}, "callback_url"),
    ({"process_id": "refunds", "action": {"summary": "x", "tools": ["shell.exec"]}}, "action.tools[0]"),
    ({"process_id": "deploys", "action": {"summary": "Bump lodash"}}, "rollback_plan"),
    ({"process_id": "refunds", "action": {"summary": "x"}, "tier": 3}, "rollback_plan"),
])
def test_422_names_the_field(agent, body, field):
    resp = agent.http.post("/api/v1/escalations", json=body)
    assert resp.status_code == 422, resp.text
    assert field in field_errors(resp), resp.json()


def test_422_for_a_body_that_is_not_json(agent):
    resp = agent.http.post("/api/v1/escalations", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"]


def test_tier_may_raise_never_lower(agent):
    raised = agent.signal(**SIGNAL, tier=3, rollback_plan="re-credit the refund")
    assert raised.status_code == 201 and raised.json()["tier"] == 3
    lowered = agent.signal(**SIGNAL, tier=0)
    assert lowered.status_code == 201 and lowered.json()["tier"] == 2


def test_423_paused_process(agent, db):
    with db.transaction() as s:
        s.add(ProcessState(process_id="refunds", status="paused", changed_by="U0DRI",
                           changed_at=clock.now(), reason="refund loop"))
    resp = agent.signal(**SIGNAL)
    assert resp.status_code == 423
    assert "refund loop" in resp.json()["message"]


def test_429_over_rate_limit_with_retry_after(agent):
    body = {"process_id": "limited", "action": {"summary": "hello"}}
    assert [agent.http.post("/api/v1/escalations", json=body).status_code for _ in range(2)] == [201, 201]
    resp = agent.http.post("/api/v1/escalations", json=body)
    assert resp.status_code == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 61


def test_413_for_a_body_over_the_limit(agent):
    resp = agent.signal(process_id="refunds", action={"summary": "x"}, message="y" * (2 * 1024 * 1024))
    assert resp.status_code == 413


def test_openapi_document_describes_the_api(agent):
    doc = agent.http.get("/openapi.json").json()
    assert "/api/v1/escalations" in doc["paths"]
    assert "EscalationSignal" in json.dumps(doc["components"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["process_id", "idempotency_key", "model", "inputs", "action", "policy_checks", "reason", "message",
          "tier", "rollback_plan", "expires_in_s", "trace_id", "callback_url"]
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={f: json_values for f in FIELDS}),
    st.fixed_dictionaries({"process_id": st.sampled_from(["refunds", "deploys", "kyc", "x"]),
                           "action": st.fixed_dictionaries({}, optional={
                               "summary": json_values | st.text(), "tools": json_values, "params": json_values})},
                          optional={f: json_values for f in FIELDS if f not in ("process_id", "action")}),
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_body_gets_a_5xx(agent, body):
    resp = agent.http.post("/api/v1/escalations", content=json.dumps(body),
                           headers={"Content-Type": "application/json"})
    assert resp.status_code < 500, (body, resp.text)
    if resp.status_code == 422:
        assert all(e["field"] for e in resp.json()["errors"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_no_raw_bytes_get_a_5xx(agent, raw):
    resp = agent.http.post("/api/v1/escalations", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code < 500


@pytest.mark.parametrize(("raw", "field"), [
    ('{"process_id": "refunds", "action": {"summary": "x"}, "message": "\\ud800"}', "message"),
    ('{"process_id": "refunds", "action": {"summary": "x"}, "inputs": {"a": NaN}}', "inputs"),
    ('{"process_id": "refunds", "action": {"summary": "x"}, "inputs": {"a": 1e999}}', "inputs"),
    ('{"process_id": "refunds", "action": {"summary": "x\\u0000y"}}', "action"),
])
def test_values_no_database_can_store_get_422_not_500(agent, raw, field):
    resp = agent.http.post("/api/v1/escalations", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert field in field_errors(resp)


def test_times_out_of_range_get_422(agent):
    old = agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m", "decision": "x",
                                                     "timestamp": "0001-01-01T00:00:00+01:00"})
    assert old.status_code == 422 and field_errors(old) == ["timestamp"]
    late = agent.http.get("/api/v1/changelog", params={"since": "9999-12-31T23:59:59-01:00"})
    assert late.status_code == 422 and field_errors(late) == ["since"]


def test_concurrent_signals_cannot_beat_the_rate_limit(agent):
    """60 signals at once against a limit of 10 a minute: exactly 10 accepted, on either database."""
    from concurrent.futures import ThreadPoolExecutor

    def send(i: int) -> int:
        resp = agent.signal(process_id="burst", action={"summary": f"burst {i}"}, idempotency_key=f"burst-{i}")
        return resp.status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        codes = list(pool.map(send, range(60)))
    assert codes.count(201) == 10 and codes.count(429) == 50, codes
