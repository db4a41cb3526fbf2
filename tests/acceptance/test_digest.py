"""Acceptance (issue 5): the daily digest at AOP_DIGEST_TIME in AOP_TIMEZONE (across a DST change),
exactly once a day across replicas and restarts, owner DMs, hygiene, `aopbot digest --dry-run`, and
/metrics from the database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from bot.domain import changelog, escalations
from bot.domain.models import DigestRun, OutboxItem
from bot.ops import clock
from bot.ops.app import build_services
from bot.ops.db import Database
from bot.sandbox.records import message_text
from bot.surfaces import digest
from bot.surfaces.digest_blocks import sparkline
from tests.helpers import open_escalation
from tests.procs import aopbot

DIGEST = "C0DIGEST"
# Europe/Berlin leaves summer time on 2026-10-25 at 03:00 CEST: 09:00 local is 07:00 UTC on the
# 24th and 08:00 UTC on the 25th.
SAT_0900 = datetime(2026, 10, 24, 7, 0, tzinfo=UTC)
SUN_0900 = datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
MON_0900 = datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


@pytest.fixture
def berlin(settings):
    return settings.model_copy(update={"aop_timezone": "Europe/Berlin", "aop_digest_time": "09:00",
                                       "aop_digest_channel": DIGEST})


@pytest.fixture
def bot(berlin, db):
    return build_services(berlin, db)


def digests(stub) -> list:
    return [m for m in stub.channel_messages(DIGEST) if m.thread_ts is None]


def dms(stub, user: str) -> list[str]:
    return [message_text(c.args) for c in stub.calls_to("chat.postMessage") if c.args["channel"] == user]


def tick_at(services, when: datetime) -> None:
    with freeze_time(when):
        services.tick()


def test_sent_at_nine_local_across_the_dst_change_and_never_before(bot, stub):
    tick_at(bot, SAT_0900 - timedelta(seconds=1))
    assert digests(stub) == []
    tick_at(bot, SAT_0900)
    assert len(digests(stub)) == 1
    tick_at(bot, SAT_0900 + timedelta(minutes=5))
    assert len(digests(stub)) == 1, "sent twice in one day"

    with freeze_time(SUN_0900 - timedelta(hours=1)):  # 09:00 in summer time, 08:00 in winter time
        open_escalation(bot, action={"summary": "Refund 08:00 local"})
        bot.tick()
    assert len(digests(stub)) == 1, "sent at 09:00 summer time on the winter-time day"
    tick_at(bot, SUN_0900 - timedelta(seconds=1))
    assert len(digests(stub)) == 1
    tick_at(bot, SUN_0900)
    assert len(digests(stub)) == 2
    with bot.db.transaction() as s:
        assert sorted(str(r.local_date) for r in s.scalars(select(DigestRun))) == ["2026-10-24", "2026-10-25"]
    sunday = message_text(digests(stub)[1])
    assert "Daily digest · 2026-10-25" in sunday and "Support refunds" in sunday and "1 escalation" in sunday
    tick_at(bot, MON_0900 - timedelta(minutes=1))
    assert len(digests(stub)) == 2
    tick_at(bot, MON_0900)
    assert len(digests(stub)) == 3
    assert stub.violations == []


def test_the_digest_window_is_the_local_day_before(bot, stub):
    with freeze_time(SUN_0900):
        local_date, since, until = digest.window_for(clock.now(), bot.settings)
    assert (str(local_date), since, until) == ("2026-10-25", SAT_0900, SUN_0900)  # 25 hours that day


def test_a_quiet_day_says_so_in_one_line(bot, stub):
    tick_at(bot, SAT_0900)
    [msg] = digests(stub)
    assert len(msg.blocks) == 1
    assert message_text(msg) == ("Daily digest 2026-10-24: no agent activity in the last day across 7 processes, "
                                 "and nothing is pending.")


def test_not_resent_after_a_restart(berlin, db, bot, stub):
    tick_at(bot, SAT_0900)
    restarted = build_services(berlin, Database(db.url))
    tick_at(restarted, SAT_0900 + timedelta(minutes=1))
    tick_at(restarted, SAT_0900 + timedelta(hours=3))
    assert len(digests(stub)) == 1
    restarted.db.dispose()


def test_a_bot_that_was_down_at_nine_sends_when_it_comes_back(bot, stub):
    tick_at(bot, SAT_0900 + timedelta(hours=2, minutes=17))
    [msg] = digests(stub)
    assert "2026-10-24" in message_text(msg)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
def test_once_a_day_with_two_replicas(berlin, db_url, stub):
    replicas = [build_services(berlin, Database(db_url)) for _ in range(2)]
    with freeze_time(SAT_0900):
        open_escalation(replicas[0], expires_in_s=600, action={"summary": "Refund overdue"})
    with freeze_time(SAT_0900 + timedelta(minutes=6)):
        for _ in range(3):
            for r in replicas:
                r.tick()
    assert len(digests(stub)) == 1
    assert sum("overdue on you" in t for t in dms(stub, "U0ESCOWNER")) == 1
    for r in replicas:
        r.db.dispose()


def test_racing_claims_send_once(berlin, db_url, db, stub):
    """Two schedulers firing at the same instant: the day's unique key lets exactly one through."""
    replicas = [build_services(berlin, Database(db_url)) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def fire(services):
        barrier.wait()
        results.append(digest.send_digest(services.db, services.registry, services.settings, SAT_0900))

    threads = [threading.Thread(target=fire, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, True]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "digest")) == 1
    for r in replicas:
        r.db.dispose()


def test_overdue_items_name_their_owner_and_owners_get_a_dm(bot, stub):
    with freeze_time(SAT_0900 - timedelta(hours=3)):
        refund = open_escalation(bot, action={"summary": "Refund <!channel> *now* <@U0X>"})  # 4 h to decide
        deploy = open_escalation(bot, process_id="deploys", action={"summary": "Bump lodash"},
                                 rollback_plan="revert")
        fresh = open_escalation(bot, process_id="kyc", action={"summary": "Approve KYC"},  # 8 h: not overdue
                                rollback_plan="undo")
    tick_at(bot, SAT_0900)
    text = message_text(digests(stub)[0])
    assert "Overdue" in text and "<@U0ESCOWNER>" in text and "owner@company.com" in text
    assert f"`{refund}`" in text and f"`{deploy}`" in text and f"`{fresh}`" not in text
    assert "Refund &lt;!channel&gt; *now* &lt;@U0X&gt;" in text
    [to_escowner] = [t for t in dms(stub, "U0ESCOWNER") if "overdue on you" in t]
    assert refund in to_escowner and deploy not in to_escowner and "1 escalation overdue on you" in to_escowner
    [to_owner] = [t for t in dms(stub, "U0OWNER") if "overdue on you" in t]  # the email owner, resolved
    assert deploy in to_owner
    assert stub.violations == []


def test_per_process_numbers_rate_jump_and_sparkline(bot, stub):
    for day in range(2, 9):  # the calm week before: 9 actions and 1 escalation a day
        with freeze_time(SAT_0900 - timedelta(days=day) + timedelta(hours=1)):
            for i in range(9):
                with bot.db.transaction() as s:
                    changelog.append(s, {"process_id": "refunds", "timestamp": clock.iso(clock.now()), "model": "m",
                                         "inputs": {}, "tools_invoked": [], "policy_checks": [],
                                         "decision": f"refund_{i}", "human_escalation": False, "owner": "U0DRI"})
            esc_id = open_escalation(bot)
            escalations.decide(bot.db, esc_id, "U0ESCOWNER", "approve")
    with freeze_time(SAT_0900 - timedelta(hours=2)) as frozen:  # today: 4 escalations, no actions
        for minutes in (0, 10, 20, 30):
            frozen.move_to(SAT_0900 - timedelta(hours=2) + timedelta(minutes=minutes))
            esc_id = open_escalation(bot)
            frozen.tick(timedelta(seconds=90))
            escalations.decide(bot.db, esc_id, "U0ESCOWNER", "reject", "no")
    with freeze_time(SAT_0900), bot.db.transaction() as s:
        _, since, until = digest.window_for(clock.now(), bot.settings)
        data = digest.build_digest(s, bot.registry, since, until, "Europe/Berlin")
    refunds = next(ln for ln in data.lines if ln.process_id == "refunds")
    assert refunds.daily == [1, 1, 1, 1, 1, 1, 4]
    assert refunds.baseline_rate == 0.1 and refunds.card.escalation_rate == 1.0 and refunds.jump
    assert [ln.process_id for ln in data.jumps] == ["refunds"]
    assert sparkline(refunds.daily) == "▃▃▃▃▃▃█"
    tick_at(bot, SAT_0900)
    text = message_text(digests(stub)[0])
    assert "Escalation rate jumps" in text and "100.0% today vs 10.0% over the 7 days before" in text
    assert "0 actions · 4 escalations (100.0%) · 0 approved / 4 rejected / 0 expired" in text
    assert "decision median 1m 30s, p90 1m 30s" in text and "▃▃▃▃▃▃█" in text
    assert "No activity: Dependency bumps, KYC decisions" in text


def test_ownership_hygiene(berlin, db, stub, registry_path):
    registry_path.write_text(registry_path.read_text() + """
  - id: orphan
    name: Orphan process
    tier: 1
    channel: C0ORPHAN
    capability: act
    blast_radius: nothing much
    escalation_policy:
      - notify: [U0SOMEONE]
  - id: ghosted
    name: Ghosted process
    tier: 1
    channel: C0GHOST
    capability: act
    blast_radius: nothing much
    raci:
      escalation: ghost@company.com
""")
    bot = build_services(berlin, db)
    with freeze_time(SAT_0900 - timedelta(hours=1)):
        open_escalation(bot, process_id="ghosted", action={"summary": "Do the thing"})
        bot.tick()  # paging tries to resolve ghost@company.com
    tick_at(bot, SAT_0900)
    text = message_text(digests(stub)[0])
    assert "Ownership hygiene" in text
    assert "*Orphan process*: no escalation owner in the registry" in text
    assert "*Ghosted process*: escalation owner ghost@company.com cannot be resolved in Slack" in text
    assert "*Ghosted process*: Slack could not resolve ghost@company.com when paging" in text
    assert stub.violations == []


def test_no_digest_channel_means_no_digest(settings, db, stub):
    bot = build_services(settings.model_copy(update={"aop_timezone": "Europe/Berlin"}), db)
    with freeze_time(SAT_0900 - timedelta(hours=3)):
        open_escalation(bot)
    tick_at(bot, SAT_0900 + timedelta(hours=1))
    assert not any("overdue on you" in t for t in dms(stub, "U0ESCOWNER"))
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DigestRun)) == 0


def test_a_huge_portfolio_stays_inside_block_kit_limits(bot, stub):
    with freeze_time(SAT_0900 - timedelta(hours=3)):
        for i in range(40):
            open_escalation(bot, process_id="fastpage", idempotency_key=f"k{i}",
                            action={"summary": "<!here> " + "x" * 3000})
    tick_at(bot, SAT_0900)
    [msg] = digests(stub)
    assert len(msg.blocks) <= 50 and "overdue" in message_text(msg)
    assert stub.violations == []


def test_cli_dry_run_prints_and_sends_nothing(db_url, db, stub, registry_path, services):
    open_escalation(services, action={"summary": "Refund for the dry run"})  # now, real time
    env = {"DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": "xoxb-test-token",
           "SLACK_API_URL": stub.url, "AOP_DIGEST_CHANNEL": DIGEST}
    result = aopbot("digest", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Daily digest ") and "Portfolio: 7 processes" in out
    assert "Support refunds (refunds)" in out and "1 escalation (100.0%)" in out and "1 pending, 0 overdue" in out
    assert stub.calls_to("chat.postMessage", ok=None) == []
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DigestRun)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "digest")) == 0


def test_cli_sends_once(db_url, db, stub, registry_path):
    env = {"DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": "xoxb-test-token",
           "SLACK_API_URL": stub.url, "AOP_DIGEST_CHANNEL": DIGEST}
    first = aopbot("digest", env=env)
    assert first.returncode == 0 and "sent to C0DIGEST" in first.stdout, first.stderr
    second = aopbot("digest", env=env)
    assert second.returncode == 0 and "already sent" in second.stdout
    assert len(digests(stub)) == 1


def metric(families, name: str, **labels) -> float:
    for fam in families:
        for sample in fam.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_read_the_database(server, agent, services, stub):
    ids = [agent.signal(process_id="refunds", idempotency_key=f"r{i}").json()["id"] for i in range(3)]
    agent.signal(process_id="deploys", rollback_plan="revert")
    stub.fail = lambda method, args: ((200, {}, {"ok": False, "error": "channel_not_found"})
                                      if args.get("channel") == "C0DEPLOYS" else None)
    services.outbox.drain()
    escalations.decide(services.db, ids[0], "U0ESCOWNER", "approve")
    escalations.decide(services.db, ids[1], "U0ESCOWNER", "reject", "no")
    families = list(text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text))
    assert metric(families, "aopbot_database_up") == 1
    assert metric(families, "aopbot_escalations", process="refunds", tier="2", status="pending") == 1
    assert metric(families, "aopbot_escalations", process="refunds", tier="2", status="approved") == 1
    assert metric(families, "aopbot_escalations", process="refunds", tier="2", status="rejected") == 1
    assert metric(families, "aopbot_escalations", process="deploys", tier="3", status="pending") == 1
    assert metric(families, "aopbot_time_to_decision_seconds_count", process="refunds") == 2
    assert metric(families, "aopbot_time_to_decision_seconds_bucket", process="refunds", le="+Inf") == 2
    assert metric(families, "aopbot_changelog_entries", process="refunds") == 2
    assert metric(families, "aopbot_outbox_failed", kind="page") == 1
    assert metric(families, "aopbot_outbox_backlog") >= 1  # the two renders, not delivered yet


def test_the_digest_publishes_chain_heads_and_verify_holds_the_log_to_them(bot, db, db_url, stub, registry_path):
    """45 chains: the first 40 heads ride on the digest, the rest on a thread reply; cutting a chain
    back (head row rewound to match) is caught by `verify --from-slack`."""
    def record(process_id: str) -> None:
        with db.transaction() as s:
            changelog.append(s, {"process_id": process_id, "timestamp": clock.iso(clock.now()), "model": "m",
                                 "inputs": {}, "tools_invoked": [], "policy_checks": [], "decision": "did",
                                 "human_escalation": False, "owner": "U0DRI"})
    for i in range(45):
        record(f"proc{i:02d}")
    record("proc44")
    record("proc44")
    tick_at(bot, SAT_0900)
    [post] = digests(stub)
    assert post.metadata["event_type"] == "aopbot_changelog_heads"
    assert len(post.metadata["event_payload"]["heads"]) == 40
    assert "change-log heads of 45 chains published" in message_text(post)
    [reply] = [m for m in stub.channel_messages(DIGEST) if m.thread_ts == post.ts]
    last = reply.metadata["event_payload"]["heads"][-1]  # objects of scalars, as Slack's metadata types allow
    assert (last["process_id"], last["seq"]) == ("proc44", 3) and len(last["hash"]) == 64

    env = {"DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": "xoxb-test-token",
           "SLACK_API_URL": stub.url, "AOP_DIGEST_CHANNEL": DIGEST}
    from bot.sandbox.records import Message

    forged = {"event_type": "aopbot_changelog_heads", "event_payload": {"heads": [
        {"process_id": "proc00", "seq": 99, "hash": "f" * 64}], "parts": 1, "local_date": "2026-10-24"}}
    stub.messages[(DIGEST, "1792000000.000001")] = Message(DIGEST, "1792000000.000001", "not ours", [],
                                                            user="UOTHERAPP", metadata=forged)
    # The stand-in stamps messages with the frozen clock (October): read back far enough to see them.
    ok = aopbot("changelog", "verify", "--from-slack", "--days", "400", env=env)
    assert ok.returncode == 0 and "held to 45 published head(s)" in ok.stdout, ok.stdout + ok.stderr
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM changelog WHERE process_id = 'proc44' AND seq > 1"))
        conn.execute(text("UPDATE changelog_heads SET seq = 1, hash = (SELECT hash FROM changelog WHERE "
                          "process_id = 'proc44' AND seq = 1) WHERE process_id = 'proc44'"))
    bad = aopbot("changelog", "verify", "--from-slack", "--days", "400", env=env)
    assert bad.returncode == 1
    assert "BROKEN proc44 seq 3: chain ends at seq 1 but its head was published at seq 3 (published in the " \
           "digest of 2026-10-24" in bad.stdout


def test_a_digest_retried_after_a_lost_answer_is_not_posted_twice(bot, db, stub):
    """Slack posted the digest but its answer never arrived (a 500 here): the retry finds the post by
    its key instead of posting again."""
    lost = []

    def lose_first_answer(method, args):
        if method == "chat.postMessage" and args.get("channel") == DIGEST and not lost:
            lost.append(stub.m_chat_postMessage(args))
            return 500, {}, {"ok": False, "error": "internal_error"}
        return None
    stub.fail = lose_first_answer
    tick_at(bot, SAT_0900)
    with freeze_time(SAT_0900 + timedelta(minutes=5)):
        bot.outbox.drain()
    assert lost and len(digests(stub)) == 1
    assert stub.calls_to("conversations.history")
