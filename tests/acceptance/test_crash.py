"""Acceptance (issue 6): real `aopbot serve` processes on PostgreSQL.

1. A bot SIGKILLed twice while agents keep signalling loses nothing and repeats almost nothing: every
   accepted signal is paged, reaches its outcome and writes exactly one change-log entry, and a crash
   repeats at most the one Slack call it had in flight.
2. Two replicas, two deciders clicking at the same moment on different replicas: exactly one outcome
   and one change-log entry per escalation; the loser is told privately who won.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest
from sqlalchemy import func, select

from bot.domain import changelog, tokens
from bot.domain.models import Escalation, OutboxItem
from tests.conftest import SIGNING_SECRET, wait_for
from tests.procs import ServeProcess, serve_env
from tests.slack_requests import SlackSender, block_action, view_submission

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # real processes share PostgreSQL

ESC_ID = re.compile(r"esc_[0-9a-f]{20}")


def _esc_ids(msg) -> set[str]:
    """The escalations a stand-in message shows (now or in any earlier version of it)."""
    return set(ESC_ID.findall(json.dumps([msg.blocks, msg.history])))


def cards_by_escalation(stub, channel: str) -> tuple[dict[str, list], dict[str, list]]:
    """(parent messages, thread cards) per escalation in a channel. Re-page notes carry no id."""
    parents: dict[str, list] = defaultdict(list)
    threads: dict[str, list] = defaultdict(list)
    for m in stub.channel_messages(channel):
        for esc_id in _esc_ids(m):
            (parents if m.thread_ts is None else threads)[esc_id].append(m)
    return parents, threads


def outbox_pending(db) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).where(OutboxItem.status == "pending"))


def changelog_entries(http: httpx.Client, process_id: str) -> list[dict]:
    resp = http.get("/api/v1/changelog", params={"process_id": process_id, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


# -- 1. crash ---------------------------------------------------------------------------------------

SIGNALS = 500
KILL_AFTER = (150, 300)


def test_a_bot_killed_twice_mid_stream_loses_nothing_and_repeats_at_most_one_post_per_kill(
        db, db_url, stub, registry_path, tmp_path):
    with db.transaction() as s:
        new = tokens.create(s, ["fastpage"], "agent")
    bot = ServeProcess(serve_env(db_url, stub, registry_path), tmp_path / "serve.log").start()
    http = httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"}, timeout=10)
    answers: dict[str, list[tuple[int, str]]] = defaultdict(list)  # key -> every 2xx (status, id)
    restarts: list[threading.Thread] = []
    retried = 0
    started = time.monotonic()

    def restart() -> None:
        time.sleep(1.0)  # down long enough for the sender to hit closed connections
        bot.start()

    try:
        for i in range(SIGNALS):
            if i in KILL_AFTER:
                for t in restarts:  # the last restart is wholly up (its delivery worker too) before the next kill
                    t.join(120)
                bot.kill()  # mid-stream: the outbox is busy paging what came before
                restarts.append(threading.Thread(target=restart, daemon=True))
                restarts[-1].start()
            key = f"crash-{i}"
            body = {"process_id": "fastpage", "idempotency_key": key, "expires_in_s": 15 + i % 11,
                    "action": {"summary": f"Action {i}"}}
            deadline = time.monotonic() + 120  # a give-up guard for a bot that never came back, not a timing
            while True:  # an agent retries the same request, same key, until it is accepted
                if time.monotonic() > deadline:
                    pytest.fail(f"signal {i} never accepted: {bot.log()}")
                try:
                    resp = http.post("/api/v1/escalations", json=body)
                except httpx.TransportError:
                    retried += 1
                    time.sleep(0.05)
                    continue
                assert resp.status_code in (200, 201), resp.text
                answers[key].append((resp.status_code, resp.json()["id"]))
                break
        for t in restarts:
            t.join(30)
        assert retried > 0, "the sender never saw the bot down"

        # One escalation per idempotency key, whatever the retries saw.
        ids_by_key = {k: {esc_id for _, esc_id in v} for k, v in answers.items()}
        assert all(len(v) == 1 for v in ids_by_key.values()), "a key produced two escalations"
        ids = {next(iter(v)) for v in ids_by_key.values()}
        assert len(ids) == SIGNALS
        with db.transaction() as s:
            stored = list(s.execute(select(Escalation.id, Escalation.idempotency_key)
                                    .where(Escalation.process_id == "fastpage")))
        assert len(stored) == SIGNALS and {k: {e} for e, k in stored} == ids_by_key

        # Every escalation reaches its outcome (expired) with exactly one change-log entry.
        def all_expired() -> bool:
            with db.transaction() as s:
                return s.scalar(select(func.count()).where(Escalation.status != "expired")) == 0

        wait_for(all_expired, timeout=60, what="every escalation to expire")
        print(f"sent and expired after {time.monotonic() - started:.0f}s")
        entries = changelog_entries(http, "fastpage")
        per_escalation = Counter(e["escalation_id"] for e in entries)
        assert set(per_escalation) == ids
        assert set(per_escalation.values()) == {1}, f"logged twice: {per_escalation.most_common(3)}"
        assert {e["decision"] for e in entries} == {"expired"}
        with db.transaction() as s:
            checked, problems = changelog.verify(s, "fastpage")
        assert checked == SIGNALS and problems == []
        for esc_id in list(ids)[:20]:
            got = http.get(f"/api/v1/escalations/{esc_id}").json()
            assert got["status"] == "expired" and got["decision"] == "expired"

        # Every escalation is paged; a kill repeats at most the one post it had in flight.
        def outbox_idle() -> bool:
            time.sleep(0.5)  # poll gently: the stand-in answering the bot shares this process
            return outbox_pending(db) == 0

        # Generous: every row of one channel is delivered in order, one at a time (about 2,500 rows here).
        wait_for(outbox_idle, timeout=400, what="every escalation paged and the outbox idle")
        print(f"outbox idle after {time.monotonic() - started:.0f}s")
        time.sleep(1)  # let a wrongly repeated delivery show up before counting
        parents, threads = cards_by_escalation(stub, "C0FAST")
        assert set(parents) == ids and set(threads) == ids
        parent_dups = sum(len(v) - 1 for v in parents.values())
        thread_dups = sum(len(v) - 1 for v in threads.values())
        assert all(1 <= len(v) <= 2 for v in parents.values()) and parent_dups <= len(KILL_AFTER), parent_dups
        assert all(1 <= len(v) <= 2 for v in threads.values()) and thread_dups <= len(KILL_AFTER), thread_dups
        assert parent_dups + thread_dups <= len(KILL_AFTER)  # one delivery in flight per process at a kill
        assert stub.violations == []
    finally:
        bot.stop()


# -- 2. two replicas, two deciders at the same moment -----------------------------------------------

ROUNDS = 100
OWNER, REFUNDER = "U0ESCOWNER", "U0REFUNDER1"  # both approvers of "refunds" (REFUNDER through S0REFUNDERS)


def reject_round(i: int) -> bool:
    """One round in four races an approve against a reject submitted through the reason modal."""
    return i % 4 == 3


def _button_value(msg, action_id: str) -> str:
    return next(e["value"] for b in msg.blocks if b.get("type") == "actions"
                for e in b["elements"] if e["action_id"] == action_id)


def _approve_click(user: str, msg) -> dict:
    message = {"type": "message", "ts": msg.ts, "thread_ts": msg.thread_ts, "text": msg.text, "blocks": msg.blocks}
    return block_action(user, "aop_approve", _button_value(msg, "aop_approve"), msg.channel, message)


def _reject_submission(user: str, esc_id: str, msg) -> dict:
    meta = json.dumps({"e": esc_id, "c": msg.channel, "t": msg.ts, "home": False}, separators=(",", ":"))
    return view_submission(user, "aop_reject_modal", meta, {
        "reason": {"reason_input": {"type": "plain_text_input", "value": f"Not this one ({esc_id})."}}})


def test_two_deciders_clicking_at_once_on_two_replicas_get_exactly_one_outcome(
        db, db_url, stub, registry_path, tmp_path):
    import yaml

    reg = yaml.safe_load(registry_path.read_text())  # this test's copy: room for 100 signals in a minute
    next(p for p in reg["processes"] if p["id"] == "refunds")["rate_limit"] = {"per_minute": 1000}
    registry_path.write_text(yaml.safe_dump(reg))
    with db.transaction() as s:
        new = tokens.create(s, ["refunds"], "agent")
    env = serve_env(db_url, stub, registry_path)
    bots = [ServeProcess(env, tmp_path / f"replica{i}.log").start() for i in range(2)]
    try:
        apis = [httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {new.token}"}, timeout=10)
                for b in bots]
        senders = [SlackSender(b.url, SIGNING_SECRET) for b in bots]
        ids = []
        for i in range(ROUNDS):
            resp = apis[i % 2].post("/api/v1/escalations", json={
                "process_id": "refunds", "idempotency_key": f"race-{i}",
                "action": {"summary": f"Refund ${i} on ticket {i}", "tools": ["billing.refund"]}})
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])

        def all_paged():
            parents, threads = cards_by_escalation(stub, "C0REFUNDS")
            return all(len(parents[e]) == 1 and len(threads[e]) == 1 for e in ids) and (parents, threads)

        parents, threads = wait_for(all_paged, timeout=60, what="every escalation paged")

        for i, esc_id in enumerate(ids):
            thread = threads[esc_id][0]
            # Alternate which replica each person's request reaches.
            to_owner, to_refunder = (senders[0], senders[1]) if i % 2 == 0 else (senders[1], senders[0])
            second = (_reject_submission(REFUNDER, esc_id, thread) if reject_round(i)
                      else _approve_click(REFUNDER, thread))
            jobs = [(to_owner, _approve_click(OWNER, thread)), (to_refunder, second)]
            barrier = threading.Barrier(len(jobs))
            statuses: list[int | None] = [None] * len(jobs)

            def send(k: int, sender: SlackSender, payload: dict) -> None:
                barrier.wait(timeout=10)
                statuses[k] = sender.interaction(payload).status_code

            workers = [threading.Thread(target=send, args=(k, *job)) for k, job in enumerate(jobs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(30)
            assert statuses == [200, 200], f"round {i}: {statuses}"

        def all_decided():
            with db.transaction() as s:
                q = select(Escalation.id, Escalation.status).where(Escalation.id.in_(ids))
                rows = {e: st for e, st in s.execute(q)}
            return all(rows[e] in ("approved", "rejected") for e in ids) and rows

        wait_for(all_decided, timeout=30, what="every escalation decided")
        views = {e: apis[0].get(f"/api/v1/escalations/{e}").json() for e in ids}
        entries = changelog_entries(apis[1], "refunds")
        by_escalation: dict[str, list[dict]] = defaultdict(list)
        for entry in entries:
            by_escalation[entry["escalation_id"]].append(entry)
        assert set(by_escalation) == set(ids)
        won = Counter()
        for i, esc_id in enumerate(ids):
            got = views[esc_id]
            logged = by_escalation[esc_id]
            assert len(logged) == 1, f"round {i}: {len(logged)} change-log entries"
            assert logged[0]["decision"] == got["status"] and logged[0]["decided_by"] == got["decided_by"]
            if reject_round(i):
                assert (got["status"], got["decided_by"]) in (("approved", OWNER), ("rejected", REFUNDER)), got
            else:
                assert got["status"] == "approved" and got["decided_by"] in (OWNER, REFUNDER), got
            if got["status"] == "approved":
                assert logged[0]["approvers"] == [got["decided_by"]]  # the losing click counted for nothing
            won[(reject_round(i), got["decided_by"])] += 1
        with db.transaction() as s:
            checked, problems = changelog.verify(s, "refunds")
        assert checked == ROUNDS and problems == []

        # The loser, and only the loser, is told privately who decided first.
        where = {m.ts: e for e in ids for m in (parents[e][0], threads[e][0])}

        def replies() -> dict[tuple[str, str], list[str]]:
            out: dict[tuple[str, str], list[str]] = defaultdict(list)
            for c in stub.calls_to("chat.postEphemeral"):
                out[(where.get(c.args.get("thread_ts")), c.args["user"])].append(c.args.get("text", ""))
            return out

        wait_for(lambda: len(replies()) >= ROUNDS, timeout=30, what="a reply to every losing click")
        time.sleep(0.5)  # a wrongly doubled reply shows up before counting
        got_replies = replies()
        assert len(got_replies) == ROUNDS, sorted(got_replies)[:5]
        for esc_id in ids:
            winner = views[esc_id]["decided_by"]
            loser = REFUNDER if winner == OWNER else OWNER
            assert got_replies.get((esc_id, winner)) is None
            texts = got_replies[(esc_id, loser)]
            assert len(texts) == 1 and f"Already {views[esc_id]['status']} by <@{winner}>" in texts[0], texts

        # Both messages show the outcome and lose their buttons, whichever replica decided.
        def rendered():
            ps, ts = cards_by_escalation(stub, "C0REFUNDS")
            return all(not _has_buttons(ps[e][0]) and not _has_buttons(ts[e][0]) for e in ids)

        wait_for(rendered, timeout=60, what="every decision rendered")
        assert stub.violations == []
        print(f"winners (reject round, who): {dict(won)}")
    finally:
        for b in bots:
            b.stop()
    for i, b in enumerate(bots):
        assert "Traceback" not in b.log_path.read_text(errors="replace"), f"replica {i}: {b.log()}"


def _has_buttons(msg) -> bool:
    return any(b.get("type") == "actions" for b in msg.blocks)


def test_clicks_acked_before_a_sigkill_are_each_applied_once_after_restart(db, db_url, stub, registry_path, tmp_path):
    """A burst of approve clicks is acked (written to the inbox in one short INSERT) while their
    decisions cannot commit yet (the test holds the escalations' row locks, as a slow database
    would); the bot is SIGKILLed right after the last ack. After a restart every acked click is
    applied exactly once: one decision, one vote, one change-log entry per escalation."""
    import yaml
    from sqlalchemy import text

    from bot.domain.models import SlackInboxItem, Vote

    reg = yaml.safe_load(registry_path.read_text())
    next(p for p in reg["processes"] if p["id"] == "refunds")["rate_limit"] = {"per_minute": 1000}
    registry_path.write_text(yaml.safe_dump(reg))
    with db.transaction() as s:
        new = tokens.create(s, ["refunds"], "agent")
    env = serve_env(db_url, stub, registry_path)
    bot = ServeProcess(env, tmp_path / "before.log").start()
    api = httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {new.token}"}, timeout=10)
    ids = [api.post("/api/v1/escalations", json={
        "process_id": "refunds", "action": {"summary": f"Refund ${i}", "tools": ["billing.refund"]}}).json()["id"]
        for i in range(20)]

    def all_paged():
        parents, threads = cards_by_escalation(stub, "C0REFUNDS")
        return all(len(threads[e]) == 1 for e in ids) and threads

    threads = wait_for(all_paged, timeout=60, what="every escalation paged")
    sender = SlackSender(bot.url, SIGNING_SECRET)
    with db.engine.connect() as holder:
        tx = holder.begin()
        holder.execute(text("SELECT id FROM escalations WHERE id = ANY(:ids) FOR UPDATE"), {"ids": ids})
        statuses = [sender.interaction(_approve_click(OWNER, threads[e][0])).status_code for e in ids]
        bot.kill()  # SIGKILL right after the last ack: no decision could commit
        tx.rollback()
    assert statuses == [200] * len(ids)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(SlackInboxItem)) == len(ids)
        assert s.scalar(select(func.count()).select_from(Vote)) == 0

    restarted = ServeProcess(env, tmp_path / "after.log").start()
    try:
        def all_approved():
            with db.transaction() as s:
                rows = dict(s.execute(select(Escalation.id, Escalation.status).where(Escalation.id.in_(ids))).all())
            return all(rows[e] == "approved" for e in ids)
        wait_for(all_approved, timeout=90, what="every acked click applied after the restart")
        with db.transaction() as s:
            votes = Counter(s.scalars(select(Vote.escalation_id).where(Vote.escalation_id.in_(ids))))
            assert s.scalar(select(func.count()).select_from(SlackInboxItem)) == 0
        assert votes == Counter({e: 1 for e in ids})
        entries = Counter(e["escalation_id"] for e in changelog_entries(api.__class__(
            base_url=restarted.url, headers=dict(api.headers), timeout=10), "refunds"))
        assert entries == Counter({e: 1 for e in ids})
    finally:
        restarted.stop()
