"""/aop who and pending against 10,000 processes and 100,000 escalations (issue 4, point 4).

Run: .venv/bin/python bench/bench_commands.py   (BENCH_DATABASE_URL, default the local `bench` database)
Reports the median and worst time of each command, measured in one run, against Slack's 3 s ack limit
(aopbot answers in the ack when the work takes under 0.3 s, else through response_url).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bot.delivery.directory import Directory  # noqa: E402
from bot.delivery.outbox import Outbox  # noqa: E402
from bot.delivery.slack_client import SlackClient  # noqa: E402
from bot.delivery.slack_flows import SlackFlows  # noqa: E402
from bot.domain.registry import Process, Registry, RegistryFile  # noqa: E402
from bot.ops.app import Services  # noqa: E402
from bot.ops.config import Settings  # noqa: E402
from bot.ops.db import Database  # noqa: E402
from bot.ops.migrate import upgrade  # noqa: E402
from bot.ops.wakeups import Wakeups  # noqa: E402
from bot.surfaces import commands  # noqa: E402
from tests.slack_stub import SlackStub  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench")
PROCESSES = 10_000
ESCALATIONS = 100_000
OPEN_EVERY = 20  # 5% still open: 5,000 waiting escalations
RUNS = 30


def reset_and_seed(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO agent_tokens (name, token_hash, prefix, process_ids, created_at, callback_secret)
            VALUES ('bench', 'x', 'aop_x', '[]', now(), 'whsec_x')"""))
        conn.execute(text("""
            INSERT INTO escalations (id, process_id, status, tier, token_id, idempotency_key, request_hash,
                action_hash, request, snapshot, resolved, created_at, expires_at, decided_at, decided_by,
                page_step, next_page_at)
            SELECT 'esc_' || lpad(g::text, 12, '0'), 'proc_' || (g % :procs),
                   CASE WHEN g % :open_every = 0 THEN 'pending' ELSE 'approved' END,
                   2, 1, NULL, md5(g::text), md5(g::text),
                   jsonb_build_object('process_id', 'proc_' || (g % :procs),
                                      'action', jsonb_build_object('summary', 'Refund $' || g, 'tools', '[]'::jsonb)),
                   jsonb_build_object('name', 'Process ' || (g % :procs), 'tier', 2, 'channel', 'C0BENCH',
                       'raci', jsonb_build_object('accountable', 'U0DRI', 'escalation', 'U0OWNER' || (g % 50)),
                       'levels', jsonb_build_array(jsonb_build_object('after', 0,
                                 'notify', jsonb_build_array('U0OWNER' || (g % 50)))),
                       'repeat', 0, 'approvers', jsonb_build_array('U0OWNER' || (g % 50)), 'compliance', '[]'::jsonb,
                       'redact', '[]'::jsonb),
                   jsonb_build_object('approvers', jsonb_build_array('U0OWNER' || (g % 50)), 'compliance', '[]'::jsonb,
                       'levels', jsonb_build_array(jsonb_build_array('U0OWNER' || (g % 50))),
                       'unresolved', '[]'::jsonb),
                   now() - (g || ' seconds')::interval, now() + interval '4 hours',
                   CASE WHEN g % :open_every = 0 THEN NULL ELSE now() END,
                   CASE WHEN g % :open_every = 0 THEN NULL ELSE 'U0OWNER1' END, 1, NULL
            FROM generate_series(1, :n) AS g"""), {"procs": PROCESSES, "open_every": OPEN_EVERY, "n": ESCALATIONS})
        conn.execute(text("""
            INSERT INTO slack_messages (escalation_id, kind, recipient, channel, ts, created_at)
            SELECT id, 'parent', '', 'C0BENCH', '1700000000.' || lpad(substr(id, 5), 6, '0'), now()
            FROM escalations"""))
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def registry() -> Registry:
    procs = [Process(id=f"proc_{i}", name=f"Process {i}", tier=i % 5, channel="C0BENCH",
                     raci={"accountable": "U0DRI", "escalation": f"U0OWNER{i % 50}"},
                     approvals={"approvers": [f"U0OWNER{i % 50}"], "compliance": ["S0COMPLIANCE"]},
                     capability="draft", rollback="Undo it by hand")
             for i in range(PROCESSES)]
    return Registry(RegistryFile(processes=procs))


def timed(fn, runs: int = RUNS) -> tuple[float, float]:
    fn()  # warm caches once, as a running bot would have them
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), max(samples)


def main() -> None:
    t0 = time.perf_counter()
    reset_and_seed(URL)
    seeded = time.perf_counter() - t0
    stub = SlackStub().start()
    stub.usergroups["S0COMPLIANCE"] = ["U0COMP"]
    settings = Settings(database_url=URL, slack_bot_token="xoxb-bench", slack_api_url=stub.url)
    db = Database(URL)
    client = SlackClient(settings.bot_token, settings.slack_api_url, interactive=True)
    flows = SlackFlows(db, client, Directory(client))
    svc = Services(settings, db, registry(), client, Outbox(db), flows, Outbox(db, kinds=frozenset({"callback"})),
                   Wakeups())
    cases = {
        "who proc_4242": "who proc_4242",
        "who proc_424 (misspelt: did-you-mean over 10,000 ids)": "who proc_42x42",
        "pending (all 5,000 open)": "pending",
        "pending proc_4240": "pending proc_4240",
        "mine (owner of 200 processes)": "mine",
        "list tier 2": "list tier 2",
    }
    print(f"seeded {ESCALATIONS:,} escalations over {PROCESSES:,} processes in {seeded:.1f}s")
    print(f"{'command':58} {'median':>9} {'worst':>9}")
    for label, words in cases.items():
        median, worst = timed(lambda w=words: commands.run(svc, "U0OWNER7", w))
        print(f"{label:58} {median * 1000:8.1f}ms {worst * 1000:8.1f}ms")
    stub.stop()


if __name__ == "__main__":
    main()
