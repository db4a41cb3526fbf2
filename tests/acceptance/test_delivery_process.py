"""Delivery in a process of its own (AOP_DELIVERY_PROCESS; on by default with PostgreSQL): `aopbot serve`
takes signals while its child pages them; the child is kicked at once, comes back when it dies, and
never outlives the bot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from bot.domain import tokens
from tests.conftest import wait_for
from tests.procs import ServeProcess, serve_env


def children(pid: int) -> list[int]:
    """Live processes whose parent is pid (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "(comm)": state, ppid, …
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]) != "Z"
    except OSError:
        return False


def paged(stub, esc_id: str) -> bool:
    return any(esc_id in str(m.blocks) for m in stub.channel_messages("C0REFUNDS") if m.thread_ts is None)


def signal_one(http: httpx.Client, summary: str) -> str:
    resp = http.post("/api/v1/escalations", json={"process_id": "refunds",
                                                    "action": {"summary": summary, "tools": ["billing.refund"]}})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def start_bot(db, db_url, stub, registry_path, tmp_path, name: str) -> tuple[ServeProcess, httpx.Client]:
    with db.transaction() as s:
        new = tokens.create(s, ["refunds"], "agent")
    # A long tick: a page that arrives within it came from the kick through the pipe, not the interval.
    env = {**serve_env(db_url, stub, registry_path), "AOP_DELIVERY_PROCESS": "1", "AOP_TICK_SECONDS": "30"}
    bot = ServeProcess(env, tmp_path / f"{name}.log").start()
    return bot, httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"}, timeout=10)


def test_the_child_pages_what_serve_takes_in_and_stops_with_it(db, db_url, stub, registry_path, tmp_path):
    bot, http = start_bot(db, db_url, stub, registry_path, tmp_path, "serve")
    try:
        worker = wait_for(lambda: children(bot.proc.pid), what="the delivery worker")
        assert len(worker) == 1
        esc_id = signal_one(http, "Refund $40")
        wait_for(lambda: paged(stub, esc_id), timeout=25, what="the page, kicked through the pipe")
    finally:
        code = bot.stop()
    assert code == 0, bot.log()
    wait_for(lambda: not alive(worker[0]), what="the worker gone with serve")
    assert "delivery worker exited" not in bot.log()  # a graceful stop is not a crash


def test_a_worker_that_dies_is_started_again_and_pages_what_came_meanwhile(db, db_url, stub, registry_path,
                                                                           tmp_path):
    bot, http = start_bot(db, db_url, stub, registry_path, tmp_path, "serve")
    try:
        first = wait_for(lambda: children(bot.proc.pid), what="the delivery worker")[0]
        os.kill(first, signal.SIGKILL)
        esc_id = signal_one(http, "Refund $41")  # accepted while no worker runs
        second = wait_for(lambda: [p for p in children(bot.proc.pid) if p != first], timeout=60,
                          what="a new delivery worker")
        assert len(second) == 1
        wait_for(lambda: paged(stub, esc_id), timeout=60, what="the page from the new worker")
        assert "delivery worker exited" in bot.log()
    finally:
        bot.stop()


def test_a_killed_serve_takes_its_worker_with_it(db, db_url, stub, registry_path, tmp_path):
    """As a killed container would: nothing is left delivering for a bot that is gone."""
    bot, _ = start_bot(db, db_url, stub, registry_path, tmp_path, "serve")
    try:
        worker = wait_for(lambda: children(bot.proc.pid), what="the delivery worker")[0]
    finally:
        bot.kill()
    wait_for(lambda: not alive(worker), timeout=30, what="the worker killed with serve")
