"""The SDK on its own, against scripted HTTP answers (httpx.MockTransport) and a fake clock: typed
errors, retries within a deadline, the long-poll resumed across the server's cap, configuration from
the environment, and the decorator's keys, hashes and outcomes. No server, no sleeping."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable

import httpx
import pytest

from aopbot_client import (
    AcknowledgedOnly,
    AopClient,
    AopConnectionError,
    ApprovalMismatch,
    ApprovalTimeout,
    AsyncAopClient,
    Conflict,
    InvalidRequest,
    NotFound,
    ProcessPaused,
    RateLimited,
    ServerError,
    Unauthorized,
    action_hash,
)
from bot.domain.intake import action_hash as server_action_hash

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def client_for(handler: Handler, cls=AopClient, **options):
    time = FakeTime()
    client = cls("http://aop.test/", "aop_test", transport=httpx.MockTransport(handler), **options)
    client._ctx = dataclasses.replace(client._ctx, clock=time.clock)
    client._sleep, client._asleep = time.sleep, time.asleep
    return client, time


def error(status: int, code: str, message: str, fields=(), headers=None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={
        "error": code, "message": message, "errors": [{"field": f, "message": message} for f in fields]})


VIEW = {"id": "esc_1", "process_id": "refunds", "status": "pending", "decision": None, "decided_by": None,
        "decided_at": None, "reason": None, "tier": 2, "created_at": "2026-11-28T18:14:08Z",
        "expires_at": "2026-11-28T22:14:08Z", "acknowledged_by": None, "acknowledged_at": None,
        "action_hash": "0" * 64, "approvals": [], "idempotency_key": "k", "trace_id": None,
        "poll_url": "http://aop.test/api/v1/escalations/esc_1", "process_status": "active"}


# -- typed errors -------------------------------------------------------------------------------------


def test_every_api_error_is_typed_with_its_status_code_and_fields():
    answers = {
        "/api/v1/escalations": error(422, "invalid_request", "action.summary: must not be blank",
                                     ["action.summary", "tier"]),
        "/api/v1/escalations/esc_gone": error(404, "not_found", "no escalation 'esc_gone'", ["id"]),
        "/api/v1/escalations/esc_1/cancel": error(409, "conflict", "escalation already approved", ["id"]),
        "/api/v1/processes/refunds": error(401, "unauthorized", "unknown or revoked token", ["Authorization"]),
    }
    seen = []
    client, _ = client_for(lambda r: seen.append(r) or answers[r.url.path])
    with pytest.raises(InvalidRequest) as invalid:
        client.escalate("refunds", " ")
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
    assert invalid.value.fields == ["action.summary", "tier"]
    assert str(invalid.value) == "422 invalid_request: action.summary: must not be blank [action.summary; tier]"
    with pytest.raises(NotFound):
        client.get("esc_gone")
    with pytest.raises(Conflict) as conflict:
        client.cancel("esc_1")
    assert conflict.value.fields == ["id"]
    with pytest.raises(Unauthorized):
        client.process("refunds")
    assert len(seen) == 4  # none of these is retried
    assert seen[0].headers["authorization"] == "Bearer aop_test" and "aop_test" not in repr(client)


def test_paused_is_its_own_error_and_not_retried():
    seen = []
    client, _ = client_for(lambda r: seen.append(r) or error(423, "process_paused", "paused by U0DRI: loop",
                                                              ["process_id"]))
    with pytest.raises(ProcessPaused) as paused:
        client.escalate("refunds", "Refund $1")
    assert paused.value.status == 423 and "U0DRI" in paused.value.message and len(seen) == 1


def test_429_waits_its_retry_after_and_a_longer_one_than_the_deadline_is_raised_at_once():
    answers = [error(429, "rate_limited", "over", ["process_id"], {"Retry-After": "2"}),
               httpx.Response(201, json={"id": "esc_1", "status": "pending", "tier": 2, "poll_url": "u"})]
    client, time = client_for(lambda r: answers.pop(0))
    assert client.escalate("refunds", "Refund $1").id == "esc_1"
    assert time.slept == [2.0]

    client, time = client_for(lambda r: error(429, "rate_limited", "over", [], {"Retry-After": "45"}),
                              retry_deadline=30)
    with pytest.raises(RateLimited) as limited:
        client.escalate("refunds", "Refund $1")
    assert limited.value.retry_after == 45 and time.slept == []


def test_connection_errors_and_5xx_are_retried_with_backoff_within_the_deadline():
    answers: list = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(502),
                     httpx.Response(200, json=VIEW)]

    def flaky(request):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, time = client_for(flaky)
    assert client.get("esc_1").status == "pending"
    assert len(time.slept) == 3 and time.slept == sorted(time.slept)  # backoff grows

    def down(request):
        raise httpx.ConnectError("refused")

    client, time = client_for(down, retry_deadline=10)
    with pytest.raises(AopConnectionError) as unreachable:
        client.get("esc_1")
    assert isinstance(unreachable.value.__cause__, httpx.ConnectError)
    assert sum(time.slept) <= 10 and len(time.slept) >= 3
    client, _ = client_for(lambda r: error(500, "error", "boom"), retry_deadline=5)
    with pytest.raises(ServerError):
        client.get("esc_1")


def test_a_record_is_resent_only_when_the_server_surely_did_not_write_it():
    """No idempotency key on records: a 500 or a lost answer may have written it, so only a refused
    connection, a 503 or a 429 is retried."""
    for failure, retried in [(httpx.Response(500), False), (httpx.ReadTimeout("lost"), False),
                             (httpx.Response(503), True), (httpx.ConnectError("refused"), True)]:
        seen = []

        def answer(request, failure=failure, seen=seen):
            seen.append(json.loads(request.content))
            if len(seen) == 1:
                if isinstance(failure, Exception):
                    raise failure
                return failure
            return httpx.Response(201, json={**seen[0], "timestamp": "t", "human_escalation": False, "seq": 1})

        client, _ = client_for(answer)
        if retried:
            assert client.record("refunds", "refunded $2").seq == 1 and len(seen) == 2
        else:
            with pytest.raises((ServerError, AopConnectionError)):
                client.record("refunds", "refunded $2")
            assert len(seen) == 1


def test_escalate_and_record_send_only_the_fields_given():
    bodies = []

    def answer(request):
        bodies.append(json.loads(request.content))
        if request.url.path == "/api/v1/escalations":
            return httpx.Response(200, json={"id": "esc_1", "status": "approved", "tier": 2, "poll_url": "u"})
        return httpx.Response(201, json={**bodies[-1], "timestamp": "t", "human_escalation": False})

    client, _ = client_for(answer, model="vendor:m")
    esc = client.escalate("refunds", "Refund $3", tools=["billing.refund"], params={"amount": 3}, tier=3,
                          rollback_plan="refund back")
    assert esc.created is False and esc.status == "approved"  # a 200: the key was seen before
    client.record("refunds", "refunded $3")
    client.record("refunds", "refunded $4", cost_usd=0.0042, tools_invoked=["billing.refund"], model="other")
    sent, plain, costed = bodies
    assert sent["action"] == {"summary": "Refund $3", "tools": ["billing.refund"], "params": {"amount": 3}}
    assert sent["idempotency_key"].startswith("sdk-") and sent["model"] == "vendor:m"
    assert set(sent) == {"process_id", "action", "idempotency_key", "model", "tier", "rollback_plan"}
    assert plain == {"process_id": "refunds", "decision": "refunded $3", "model": "vendor:m"}  # no cost_usd
    assert costed["cost_usd"] == 0.0042 and costed["model"] == "other"


def test_configuration_comes_from_aop_url_and_aop_token(monkeypatch):
    monkeypatch.delenv("AOP_URL", raising=False)
    monkeypatch.delenv("AOP_TOKEN", raising=False)
    with pytest.raises(ValueError, match="AOP_URL"):
        AopClient()
    monkeypatch.setenv("AOP_URL", "http://aop.example:3000/")
    with pytest.raises(ValueError, match="AOP_TOKEN"):
        AopClient()
    monkeypatch.setenv("AOP_TOKEN", "aop_env")
    seen = []
    with AopClient(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=VIEW))) as c:
        c.get("esc_1")
    assert str(seen[0].url) == "http://aop.example:3000/api/v1/escalations/esc_1"
    assert seen[0].headers["authorization"] == "Bearer aop_env"


# -- waiting ------------------------------------------------------------------------------------------


def long_poll(decisions: list[dict], time: list[FakeTime], polls: list[int]) -> Handler:
    """A server whose long-poll takes its whole wait while undecided (on the fake clock)."""

    def answer(request):
        wait = int(request.url.params.get("wait", 0))
        polls.append(wait)
        view = {**VIEW, **decisions.pop(0)}
        if view["decision"] is None and view["process_status"] == "active":
            time[0].now += wait
        return httpx.Response(200, json=view)

    return answer


def test_wait_resumes_across_the_60_second_cap_until_the_outcome():
    polls: list[int] = []
    holder: list[FakeTime] = []
    undecided = {"decision": None}
    client, time = client_for(long_poll([undecided, undecided, {"status": "approved", "decision": "approved"}],
                                        holder, polls))
    holder.append(time)
    esc = client.wait("esc_1")
    assert esc.approved and esc.decided and polls == [60, 60, 60]

    polls.clear()
    client, time = client_for(long_poll([undecided, undecided], holder, polls))
    holder[:] = [time]
    esc = client.wait("esc_1", timeout=90)
    assert not esc.decided and polls == [60, 30]  # the last poll waits only what is left


def test_while_the_process_is_paused_wait_polls_gently():
    polls: list[int] = []
    holder: list[FakeTime] = []
    paused = {"decision": None, "process_status": "paused"}
    client, time = client_for(long_poll([paused, paused, {"status": "rejected", "decision": "rejected"}],
                                        holder, polls), paused_poll_s=30)
    holder.append(time)
    assert client.wait("esc_1").decision == "rejected"
    assert time.slept == [30, 30] and polls == [60, 60, 60]


# -- the decorator ------------------------------------------------------------------------------------


class FakeAop:
    """Escalations by idempotency key, decided as the test says; change-log records kept."""

    def __init__(self, decide: Callable[[dict], dict]):
        self.decide = decide
        self.escalations: dict[str, dict] = {}
        self.records: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/escalations":
            body = json.loads(request.content)
            key = body["idempotency_key"]
            created = key not in self.escalations
            if created:
                esc_id = f"esc_{len(self.escalations):020x}"
                self.escalations[key] = {**VIEW, "id": esc_id, "idempotency_key": key, "body": body,
                                         "action_hash": server_action_hash(body["action"]), **self.decide(body)}
            esc = self.escalations[key]
            return httpx.Response(201 if created else 200, json={k: esc[k] for k in ("id", "status", "tier")} | {
                "poll_url": "u"})
        if request.url.path == "/api/v1/changelog":
            self.records.append(json.loads(request.content))
            return httpx.Response(201, json={**self.records[-1], "timestamp": "t", "human_escalation": False})
        esc = next(e for e in self.escalations.values() if request.url.path.endswith(e["id"]))
        return httpx.Response(200, json={k: v for k, v in esc.items() if k != "body"})


APPROVED = {"status": "approved", "decision": "approved", "decided_by": "U0ESCOWNER"}


def test_the_key_follows_the_process_function_and_canonical_arguments():
    aop = FakeAop(lambda body: APPROVED)
    client, _ = client_for(aop)
    runs = []

    @client.require_approval("refunds", summary=lambda ticket, amount, note=None: f"Refund ${amount} on {ticket}",
                             tools=["billing.refund"], inputs=lambda ticket, amount, note=None: {"ticket_id": ticket},
                             reason="refund_limit", rollback_plan="Reverse it in billing")
    def refund(ticket: str, amount: int, note: dict | None = None) -> int:
        runs.append((ticket, amount))
        return amount

    assert refund("T1", 5) == 5
    assert refund(amount=5, ticket="T1", note=None) == 5  # the same call, spelled differently
    assert len(aop.escalations) == 1 and len(runs) == 2  # one escalation, its approval covering both
    refund("T1", 6)
    refund("T1", 5, note={"b": 1, "a": 2})
    refund("T1", 5, note={"a": 2, "b": 1})  # key order does not make a new call
    assert len(aop.escalations) == 3
    first = next(iter(aop.escalations.values()))["body"]
    assert (first["inputs"], first["reason"], first["rollback_plan"]) == ({"ticket_id": "T1"}, "refund_limit",
                                                                          "Reverse it in billing")
    assert first["action"] == {"summary": "Refund $5 on T1", "tools": ["billing.refund"],
                               "params": {"ticket": "T1", "amount": 5, "note": None}}
    assert aop.records[0]["action_hash"] == action_hash("Refund $5 on T1", ["billing.refund"],
                                                        {"ticket": "T1", "amount": 5, "note": None})
    assert aop.records[0]["decision"] == "Refund $5 on T1" and aop.records[0]["tools_invoked"] == ["billing.refund"]

    @client.require_approval("other_process", summary=lambda ticket, amount, note=None: f"Refund ${amount}")
    def refund_elsewhere(ticket: str, amount: int, note=None) -> None: ...

    refund_elsewhere("T1", 5)
    keys = list(aop.escalations)
    assert len(set(keys)) == 4

    class Agent:
        @client.require_approval("refunds", summary="Close the ticket",
                                 idempotency_key=lambda self, ticket: f"close-{ticket}")
        def close(self, ticket: str) -> str:
            return "closed"

    assert Agent().close("T9") == "closed"
    assert "close-T9" in aop.escalations
    assert aop.escalations["close-T9"]["body"]["action"]["params"] == {"ticket": "T9"}  # no self

    with pytest.raises(TypeError, match="JSON"):
        refund("T1", 5, note=object())


def test_the_local_action_hash_is_the_servers():
    for summary, tools, params in [("Refund $120 on ticket 123", ["billing.refund"], {"amount": 120}),
                                   ("Café ✓", [], {"x": 0.1, "y": {"b": [1, 2.5], "a": None}})]:
        assert action_hash(summary, tools, params) == server_action_hash(
            {"summary": summary, "tools": tools, "params": params})


def test_outcomes_other_than_approval_never_run_the_tool():
    runs = []
    cases = [({"status": "acknowledged", "decision": "acknowledged", "decided_by": "U0A"}, AcknowledgedOnly),
             ({**APPROVED, "action_hash": "f" * 64}, ApprovalMismatch)]
    for outcome, denial in cases:
        client, _ = client_for(FakeAop(lambda body, outcome=outcome: outcome))

        @client.require_approval("refunds", summary="Refund $1")
        def refund() -> None:
            runs.append(1)

        with pytest.raises(denial) as denied:
            refund()
        assert denied.value.escalation_id.startswith("esc_") and "Do not perform it" in str(denied.value)

    polls: list[int] = []
    holder: list[FakeTime] = []
    undecided = long_poll([{"decision": None}, {"decision": None}], holder, polls)
    created = {"id": "esc_1", "status": "pending", "tier": 2, "poll_url": "u"}
    client, time = client_for(lambda r: httpx.Response(201, json=created) if r.method == "POST" else undecided(r))
    holder.append(time)

    @client.require_approval("refunds", summary="Refund $1", timeout=90)
    def patient() -> None:
        runs.append(1)

    with pytest.raises(ApprovalTimeout, match="still open"):
        patient()
    assert runs == [] and polls == [60, 30]


def test_either_client_gates_sync_and_async_functions_alike():
    aop = FakeAop(lambda body: APPROVED)
    sync_client, _ = client_for(aop)
    async_client, _ = client_for(aop, cls=AsyncAopClient)

    def plain(n: int) -> int:
        return n * 2

    async def coroutine(n: int) -> int:
        return n * 3

    gate = {"process_id": "refunds", "summary": lambda n: f"Double {n}"}
    assert sync_client.require_approval(**gate)(plain)(2) == 4
    assert asyncio.run(sync_client.require_approval(**gate)(coroutine)(2)) == 6
    assert async_client.require_approval(**gate)(plain)(3) == 6
    assert asyncio.run(async_client.require_approval(**gate)(coroutine)(3)) == 9
    assert len(aop.records) == 4

    async def use_async_client():
        async with async_client:
            assert (await async_client.escalate("refunds", "Anything")).created
            assert (await async_client.get("esc_00000000000000000000")).decided

    asyncio.run(use_async_client())


def test_a_record_that_fails_after_the_tool_ran_is_logged_and_the_result_kept(caplog):
    aop = FakeAop(lambda body: APPROVED)

    def paused_records(request):
        if request.url.path == "/api/v1/changelog":
            return error(423, "process_paused", "paused by U0DRI", ["process_id"])
        return aop(request)

    client, _ = client_for(paused_records)

    @client.require_approval("refunds", summary="Refund $1")
    def refund() -> str:
        return "done"

    with caplog.at_level(logging.ERROR, logger="aopbot_client"):
        assert refund() == "done"  # raising now would invite a second run
    assert "change-log record failed" in caplog.text and "paused by U0DRI" in caplog.text
