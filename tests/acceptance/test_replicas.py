"""Acceptance (issue 3, points 4 and 5): real `aopbot serve` processes. Two replicas on one
PostgreSQL page, re-page and expire each escalation exactly once; a killed bot's timers still fire
after a restart."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter

import httpx
import pytest

from bot.domain import tokens
from tests.conftest import wait_for
from tests.procs import ServeProcess, serve_env


def dms_by_escalation(stub, user: str) -> Counter:
    counts: Counter = Counter()
    for c in stub.calls_to("chat.postMessage"):
        if c.args["channel"] == user:
            esc_id = json.dumps(c.args["blocks"]).split("`esc_")[1].split("`")[0]
            counts["esc_" + esc_id] += 1
    return counts


def expiry_updates(stub) -> Counter:
    """Parent messages turned to Expired, per escalation (one render each)."""
    counts: Counter = Counter()
    for c in stub.calls_to("chat.update"):
        if c.args["channel"] == "C0FAST" and c.args.get("text", "").startswith("Expired") and \
                "Agent:" in json.dumps(c.args["blocks"]):
            counts[json.dumps(c.args["blocks"]).split("`esc_")[1].split("`")[0]] += 1
    return counts


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
def test_two_replicas_repage_and_expire_exactly_once(db, db_url, stub, registry_path, tmp_path):
    with db.transaction() as s:
        new = tokens.create(s, ["fastpage"], "agent")
    env = serve_env(db_url, stub, registry_path)
    bots = [ServeProcess(env, tmp_path / f"replica{i}.log").start() for i in range(2)]
    try:
        clients = [httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {new.token}"}) for b in bots]
        ids = []
        for i, http in zip(range(50), itertools.cycle(clients)):
            resp = http.post("/api/v1/escalations", json={
                "process_id": "fastpage", "idempotency_key": f"k{i}", "expires_in_s": 25,
                "action": {"summary": f"Action {i}"}})
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        wait_for(lambda: all(clients[0].get(f"/api/v1/escalations/{e}").json()["status"] == "expired" for e in ids),
                 timeout=60, what="every escalation to expire")
        wait_for(lambda: len(expiry_updates(stub)) == 50, timeout=30, what="every expiry rendered")
        time.sleep(1)  # let a wrongly duplicated delivery show up before counting
        for user in ("U0FAST1", "U0FAST2", "U0FAST3"):
            counts = dms_by_escalation(stub, user)
            assert set(counts) == set(ids), f"{user} missed pages"
            assert set(counts.values()) == {1}, f"{user} paged twice: {counts.most_common(3)}"
        assert set(expiry_updates(stub).values()) == {1}
        notes = [c for c in stub.calls_to("chat.postMessage") if "paging level" in c.args.get("text", "")]
        assert len(notes) == 100  # two re-page notes per escalation
        entries = clients[0].get("/api/v1/changelog", params={"limit": 1000}).text.splitlines()
        assert sorted(json.loads(e)["escalation_id"] for e in entries) == sorted(ids)
        assert stub.violations == []
    finally:
        for b in bots:
            b.stop()


def outbox_idle(db) -> bool:
    from sqlalchemy import func, select

    from bot.domain.models import OutboxItem

    with db.transaction() as s:
        return s.scalar(select(func.count()).where(OutboxItem.status == "pending")) == 0


def test_a_killed_bot_still_fires_its_repages_after_restart(db, db_url, stub, registry_path, tmp_path):
    with db.transaction() as s:
        new = tokens.create(s, ["fastpage"], "agent")
    env = serve_env(db_url, stub, registry_path)
    bot = ServeProcess(env, tmp_path / "serve.log").start()
    http = httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"})
    esc_id = http.post("/api/v1/escalations", json={"process_id": "fastpage", "action": {"summary": "x"}}).json()["id"]
    wait_for(lambda: dms_by_escalation(stub, "U0FAST1")[esc_id] == 1 and outbox_idle(db), what="the first page")
    bot.kill()
    assert dms_by_escalation(stub, "U0FAST2")[esc_id] == 0
    time.sleep(4.5)  # both re-pages fall due while no bot runs
    restarted = ServeProcess(env, tmp_path / "serve2.log").start()
    try:
        wait_for(lambda: dms_by_escalation(stub, "U0FAST2")[esc_id] == 1 and
                 dms_by_escalation(stub, "U0FAST3")[esc_id] == 1, what="re-pages after the restart")
        time.sleep(0.5)
        assert dms_by_escalation(stub, "U0FAST1")[esc_id] == 1  # nothing repeated
    finally:
        restarted.stop()
