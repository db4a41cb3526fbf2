"""Acceptance (issue 6, point 1 and the fallback): nothing dropped, nothing twice, order kept per
channel while Slack rate-limits and fails; a channel Slack refuses for good falls back to a DM."""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy import select

from bot.sandbox.records import message_text
from tests.helpers import buttons, escalation_messages, open_escalation

CHANNELS = {"refunds": "C0REFUNDS", "deploys": "C0DEPLOYS", "kyc": "C0KYC", "summaries": "C0SUMMARIES",
            "fastpage": "C0FAST"}


def flaky(stub):
    """429 (Retry-After: 1) to a third of the calls and 500 to another tenth, deterministically."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def fail(method, args):
        with lock:
            n = next(counter)
        if n % 3 == 0:
            return 429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}
        if n % 10 == 1:
            return 500, {}, {"ok": False, "error": "internal_error"}
        return None

    stub.fail = fail


def esc_of(msg) -> str:
    return json.dumps(msg.blocks).split("`esc_")[1].split("`")[0]


def test_rate_limits_and_5xx_lose_nothing_and_keep_channel_order(services, stub):
    flaky(stub)
    opened: dict[str, list[str]] = defaultdict(list)
    with freeze_time("2026-11-25 10:00:00") as frozen:
        for i, pid in zip(range(200), itertools.cycle(CHANNELS)):
            extra = {"rollback_plan": "undo"} if pid in ("deploys", "kyc") else {}
            esc_id = open_escalation(services, process_id=pid, action={"summary": f"Action {i}"}, **extra)
            opened[CHANNELS[pid]].append(esc_id.removeprefix("esc_"))
            frozen.tick(timedelta(seconds=1.5))  # stays under each process's rate limit
        for _ in range(2000):  # a channel's head row gets one try a round; most calls fail
            services.outbox.drain()
            if services.outbox.backlog()[0] == 0:
                break
            frozen.tick(timedelta(seconds=1))  # wait out Retry-After by travelling, not sleeping
        from sqlalchemy import text

        with services.db.transaction() as s:
            rows = s.execute(text("SELECT kind, attempts, next_attempt_at, last_error FROM outbox "
                                  "WHERE status = 'pending'")).all()
        assert services.outbox.backlog()[0] == 0, rows[:5]
    assert len(stub.calls_to("chat.postMessage", ok=False)) > 50  # the failures really happened
    for channel, ids in opened.items():
        parents = [m for m in stub.channel_messages(channel) if m.thread_ts is None]
        assert [esc_of(m) for m in parents] == ids, f"{channel}: paged out of order or twice"
        threads = [m for m in stub.channel_messages(channel) if m.thread_ts is not None]
        assert sorted(esc_of(m) for m in threads) == sorted(ids)
    assert stub.violations == []


def test_a_channel_slack_refuses_falls_back_to_the_accountable_owner(services, stub):
    stub.fail = lambda method, args: ((200, {}, {"ok": False, "error": "channel_not_found"})
                                      if method == "chat.postMessage" and args.get("channel") == "C0REFUNDS"
                                      else None)
    esc_id = open_escalation(services)
    services.outbox.drain()
    dms = [c for c in stub.calls_to("chat.postMessage") if c.args["channel"] == "U0DRI"]
    assert len(dms) == 1
    text = message_text(dms[0].args)
    assert "could not post it in the process channel" in text and "channel_not_found" in text
    assert "Refund $120 on ticket 123" in text
    assert [e["action_id"] for b in dms[0].args["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "aop_approve", "aop_reject", "aop_ack"]
    from bot.domain import escalations

    escalations.decide(services.db, esc_id, "U0DRI", "approve")
    services.outbox.drain()
    fallback = next(m for m in stub.messages.values() if m.channel == "D0DRI")
    assert "Approved" in message_text(fallback) and "aop_approve" not in json.dumps(fallback.blocks)
    failed = services.outbox.db.engine.connect().exec_driver_sql(
        "SELECT kind, status FROM outbox WHERE status = 'failed'").all()
    assert [tuple(r) for r in failed] == [("page", "failed")]


def test_one_unreachable_person_does_not_stop_the_others(services, stub, registry_path):
    stub.fail = lambda method, args: ((200, {}, {"ok": False, "error": "user_not_found"})
                                      if method == "chat.postMessage" and args.get("channel") == "U0FAST1"
                                      else None)
    registry_path.write_text(registry_path.read_text().replace("      - notify: [U0FAST1]",
                                                               "      - notify: [U0FAST1, U0FASTX]"))
    from bot.domain.registry import load_registry_file, store_snapshot

    with services.db.transaction() as s:
        store_snapshot(s, load_registry_file(registry_path), "test")
    services.refresh_registry()
    open_escalation(services, process_id="fastpage")
    services.outbox.drain()
    assert any(c.args["channel"] == "U0FASTX" for c in stub.calls_to("chat.postMessage"))
    note = [c for c in stub.calls_to("chat.postMessage") if c.args["channel"] == "U0DRI"]
    assert len(note) == 1 and "user_not_found" in note[0].args["text"]
    _, thread = escalation_messages(stub, "C0FAST", _esc(stub))
    assert buttons(thread)


def _esc(stub) -> str:
    parent = next(m for m in stub.channel_messages("C0FAST") if m.thread_ts is None)
    return "esc_" + esc_of(parent)


def test_a_refused_delivery_shows_in_the_digest(services, stub):
    from datetime import timedelta as td

    from bot.ops import clock
    from bot.surfaces import digest

    stub.fail = lambda method, args: ((200, {}, {"ok": False, "error": "not_in_channel"})
                                      if method == "chat.postMessage" and args.get("channel") == "C0REFUNDS"
                                      else None)
    open_escalation(services)
    services.outbox.drain()
    now = clock.now()
    with services.db.transaction() as s:
        d = digest.build_digest(s, services.registry, now - td(days=1), now + td(seconds=1), "UTC")
    problems = [h.problem for h in d.hygiene if h.process_id == "refunds"]
    assert problems == ["Slack refused 1 delivery for good (not_in_channel); is the bot in the channel?"]


def test_a_5xx_after_rate_limits_backs_off_from_one_second(services, stub):
    """Retry-After waits are not failures: seven 429s then a 500 cost ~7 s + 1 s, not minutes."""
    refusals = [(429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"})] * 7
    refusals.append((500, {}, {"ok": False, "error": "internal_error"}))
    stub.fail = lambda method, args: refusals.pop(0) if method == "chat.postMessage" and refusals else None
    with freeze_time("2026-11-28 10:00:00") as frozen:
        open_escalation(services)
        seconds = 0
        while not stub.calls_to("chat.postMessage") and seconds < 300:
            services.outbox.drain()
            frozen.tick(timedelta(seconds=1))
            seconds += 1
    assert refusals == [] and stub.calls_to("chat.postMessage")
    assert seconds <= 7 + 1 + 2  # each Retry-After, then the first step of the 5xx backoff


def test_a_page_whose_answer_was_lost_is_not_posted_twice(services, stub):
    """Slack posted the parent (and then the thread card) but the answer never came back (a 500, as
    after a timeout or a crash before the ts was written down): the retry finds each post by its key
    and adopts it, so the channel shows the escalation once."""
    lost: list[str] = []

    def post_then_lose_answer(method, args):
        if method == "chat.postMessage" and args.get("channel") == "C0REFUNDS" and len(lost) < 2:
            stub.m_chat_postMessage(args)
            lost.append(args.get("thread_ts") or "parent")
            return 500, {}, {"ok": False, "error": "internal_error"}
        return None

    stub.fail = post_then_lose_answer
    with freeze_time("2026-11-25 10:00:00") as frozen:
        esc_id = open_escalation(services)
        for _ in range(5):
            services.outbox.drain()
            frozen.tick(timedelta(seconds=5))
    assert len(lost) == 2  # both the parent and the thread card were posted without an answer
    parent, thread = escalation_messages(stub, "C0REFUNDS", esc_id)
    assert buttons(thread)


def test_each_failed_page_level_tells_the_owner_even_the_second_time(services, stub):
    """Level 1 (U0FAST1) and level 2 (U0FAST2) both unreachable: the accountable owner gets a note for
    each (the second used to be de-duplicated away as "already told")."""
    unreachable = {"U0FAST1", "U0FAST2"}
    stub.fail = lambda method, args: ((200, {}, {"ok": False, "error": "user_not_found"})
                                      if method == "chat.postMessage" and args.get("channel") in unreachable
                                      else None)
    with freeze_time("2026-11-25 10:00:00") as frozen:
        open_escalation(services, process_id="fastpage")
        services.tick()
        frozen.tick(timedelta(seconds=2))
        services.tick()
        services.outbox.drain()
    notes = [message_text(c.args) for c in stub.calls_to("chat.postMessage") if c.args["channel"] == "U0DRI"]
    assert len(notes) == 2, notes
    assert "U0FAST1" in notes[0] and "U0FAST2" in notes[1]


def test_outbox_retry_and_drop_leave_a_row_being_delivered_alone(services, stub):
    """An operator's retry while a live worker is sending the row would let a second worker send it
    too; the CLI says so and touches nothing."""
    from bot.delivery import outbox
    from bot.domain.models import OutboxItem
    from tests.procs import aopbot

    open_escalation(services)
    [item] = services.outbox.claim(limit=1)  # leased by this (live) worker, as if mid-delivery
    env = {"DATABASE_URL": services.settings.database_url}
    retried = aopbot("outbox", "retry", str(item.id), env=env)
    assert retried.returncode == 1 and "being delivered right now" in retried.stderr
    assert aopbot("outbox", "drop", str(item.id), env=env).returncode == 1
    with services.db.transaction() as s:
        row = s.get(OutboxItem, item.id)
        assert (row.status, row.locked_by) == ("pending", services.outbox.worker_id)
    services.outbox.deliver(item)
    assert len([m for m in stub.channel_messages("C0REFUNDS") if m.thread_ts is None]) == 1
    assert outbox.retry(services.db, [item.id]) == 0  # delivered: nothing to retry


def test_the_next_pass_is_due_when_a_retry_after_ends(services, stub):
    """A 429's Retry-After is when the scheduler runs the next pass (not its next interval, which made
    each 1 s wait cost up to 2 s); a row waiting behind its channel's head does not count, nor one
    another live worker is sending."""
    from bot.delivery.outbox import Outbox

    refusals = [(429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"})]
    stub.fail = lambda method, args: refusals.pop(0) if method == "chat.postMessage" and refusals else None
    with freeze_time("2026-11-28 10:00:00", tz_offset=0) as frozen:
        start = datetime.now(UTC)
        assert services.outbox.next_due() is None
        open_escalation(services)
        open_escalation(services, action={"summary": "Second"})  # same channel: behind the first
        services.outbox.drain()
        assert refusals == [] and services.outbox.next_due() == start + timedelta(seconds=1)
        frozen.tick(timedelta(seconds=1))
        assert len(Outbox(services.db, worker_id="another replica").claim(limit=1)) == 1
        assert services.outbox.next_due() is None


def test_a_backlog_on_one_channel_never_hides_another_channels_page(services, stub):
    """A burst of 250 rows on one channel: the head of every other channel is still claimed next to
    that channel's head, and the batch's spare room goes to the rows right behind the heads, in order."""
    from bot.delivery.outbox import Outbox, enqueue

    with services.db.transaction() as s:
        burst = [enqueue(s, "noop", "C0BURST", {"i": i}) for i in range(250)]
        quiet = enqueue(s, "noop", "C0QUIET", {})
    assert services.outbox.next_due() is not None  # the quiet channel's head, behind the burst, is due
    claimed = Outbox(services.db, worker_id="another replica").claim(limit=20)
    assert [(it.ordering_key, it.id) for it in claimed] == \
        [("C0BURST", row.id) for row in burst[:10]] + [("C0QUIET", quiet.id)]  # (20 - 2 heads) // 2 each
    assert services.outbox.next_due() is None  # both heads are out with a live replica: nothing is due
    assert Outbox(services.db, worker_id="a third replica").claim(limit=20) == []  # nor anything behind them


def test_a_chain_goes_out_in_order_and_waits_behind_a_head_told_to_retry(services, stub):
    """The rows claimed behind a head are sent after it, in order; when one is told to retry, the rest
    of its chain is given back untried (no attempt counted) and nothing behind it goes before it."""
    from bot.delivery.outbox import Outbox, RetryLater, enqueue
    from bot.domain.models import OutboxItem

    sent: list[int] = []
    refuse = {5}

    def send(item) -> None:
        i = item.payload["i"]
        if i in refuse:
            refuse.discard(i)
            raise RetryLater("slow down", delay_s=1)
        sent.append(i)

    box = Outbox(services.db, worker_id="chains")
    box.register("seq", send)
    with freeze_time("2026-11-28 10:00:00", tz_offset=0) as frozen:
        with services.db.transaction() as s:
            rows = [enqueue(s, "seq", "C0BURST", {"i": i}) for i in range(40)]
        assert box.run_once(limit=20) == 20  # the head and the 19 rows behind it
        assert sent == [0, 1, 2, 3, 4]
        with services.db.transaction() as s:
            given_back = s.scalars(select(OutboxItem).where(OutboxItem.id.in_([r.id for r in rows[6:20]]))).all()
            assert {(r.status, r.locked_by, r.attempts) for r in given_back} == {("pending", None, 0)}
        assert box.run_once(limit=20) == 0  # row 5 waits its second, and every row behind it with it
        frozen.tick(timedelta(seconds=1))
        assert box.run_once(limit=20) == 1  # a head that was told to retry goes alone
        assert box.run_once(limit=20) == 20
        assert box.run_once(limit=20) == 14
    assert sent == list(range(40))


def test_a_chain_stops_where_its_lease_was_lost(services, stub):
    """A worker whose lease on a row ran out (another took the row over) sends nothing more of that
    row's chain: the rows behind it are given back untried, for whoever holds the key now."""
    from sqlalchemy import update

    from bot.delivery.outbox import Outbox, enqueue
    from bot.domain.models import OutboxItem

    sent: list[int] = []

    def send(item) -> None:
        sent.append(item.payload["i"])
        if item.payload["i"] == 1:  # meanwhile our lease ran out and another worker took the row over
            with services.db.transaction() as s:
                s.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(locked_by="another worker"))

    box = Outbox(services.db, worker_id="chains")
    box.register("seq", send)
    with services.db.transaction() as s:
        rows = [enqueue(s, "seq", "C0BURST", {"i": i}) for i in range(5)]
    assert box.run_once(limit=20) == 5
    assert sent == [0, 1]
    with services.db.transaction() as s:
        behind = s.scalars(select(OutboxItem).where(OutboxItem.id.in_([r.id for r in rows[2:]]))).all()
        assert {(r.status, r.locked_by, r.attempts) for r in behind} == {("pending", None, 0)}
