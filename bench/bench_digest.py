"""Benchmark: every scorecard and the whole daily digest over 1,000,000 change-log entries.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench .venv/bin/python bench/bench_digest.py

Drops and re-creates the schema of that database (never point it at one you need), migrates it,
seeds 1,000,000 change-log rows over 200 processes and 30 days (with costs) plus 50,000 escalations
(costs, start times, re-page notes), 50,000 QA reviews and 300 model changes with INSERT ... SELECT
generate_series, then times the digest's database work.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bot.delivery.outbox import Outbox  # noqa: E402
from bot.domain.registry import Registry, RegistryFile  # noqa: E402
from bot.domain.scorecard import scorecards  # noqa: E402
from bot.ops.db import Database  # noqa: E402
from bot.ops.metrics import DatabaseCollector  # noqa: E402
from bot.ops.migrate import upgrade  # noqa: E402
from bot.surfaces.digest import build_digest, days_back  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench")
PROCESSES = 200
ENTRIES = 1_000_000
ESCALATIONS = 50_000
DAYS = 30
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RUNS = 5

SEED = """
INSERT INTO agent_tokens (id, name, token_hash, prefix, process_ids, callback_secret, created_at)
VALUES (1, 'bench', repeat('0', 64), 'aop_bench', '[]', 'x', :now);

INSERT INTO changelog (process_id, seq, timestamp, escalation_id, human_escalation, decision, body, hash)
SELECT 'p' || lpad((g % :procs)::text, 3, '0'), g / :procs + 1,
       :now - (g::double precision / :entries) * interval '30 days' - interval '1 second',
       NULL, g % 20 = 0, 'did_it',
       CASE WHEN g % 20 = 0 THEN '{"process_id":"bench"}'
            ELSE '{"cost_usd":' || ((g % 50) * 0.001)::text || ',"process_id":"bench"}' END,
       md5(g::text) || md5(g::text)
FROM generate_series(0, :entries - 1) AS g;

INSERT INTO changelog_heads (process_id, seq, hash)
SELECT 'p' || lpad(p::text, 3, '0'), :entries / :procs, repeat('0', 64) FROM generate_series(0, :procs - 1) AS p;

INSERT INTO escalations (id, process_id, status, tier, token_id, idempotency_key, request_hash, action_hash, request,
                         snapshot, resolved, created_at, expires_at, decided_at, decided_by, page_step, next_page_at,
                         cost_usd, started_at)
SELECT 'esc_' || lpad(g::text, 8, '0'), 'p' || lpad((g % :procs)::text, 3, '0'),
       CASE WHEN c > :now - interval '8 hours' AND g % 3 = 0 THEN 'pending'
            WHEN g % 7 = 5 AND g % 5 < 2 THEN 'acknowledged'  -- an outcome on tiers 0-1 only
            ELSE (ARRAY['approved', 'approved', 'approved', 'rejected', 'expired', 'approved',
                        'cancelled'])[1 + g % 7] END,
       g % 5, 1, NULL, 'h', 'a',
       jsonb_build_object('action', jsonb_build_object('summary', 'Refund ticket ' || g)),
       jsonb_build_object('raci', jsonb_build_object('escalation', 'U0OWNER' || (g % 17), 'accountable', 'U0DRI')),
       jsonb_build_object('unresolved', CASE WHEN g % 997 = 0 THEN jsonb_build_array('gone@company.com')
                                             ELSE '[]'::jsonb END),
       c, c + interval '4 hours',
       CASE WHEN c > :now - interval '8 hours' AND g % 3 = 0 THEN NULL ELSE c + (g % 7200) * interval '1 second' END,
       'U0DECIDER', 1, NULL, (g % 5) * 0.01, c - (g % 600) * interval '1 second'
FROM (SELECT g, :now - (g::double precision / :escs) * interval '30 days' - interval '1 second' AS c
      FROM generate_series(0, :escs - 1) AS g) AS s;

-- 50,000 QA reviews over the 30 days (8 % Wrong), and 300 sampled actions still waiting (some overdue).
INSERT INTO qa_reviews (process_id, entry_seq, entry_hash, token_id, callback_url, tier, snapshot, resolved,
                        sampled_at, due_at, status, reviewed_by, reviewed_at, note, review_seq, channel, ts)
SELECT 'p' || lpad((g % :procs)::text, 3, '0'), g / :procs + 1, md5(g::text) || md5(g::text), 1, NULL, 2,
       jsonb_build_object('name', 'bench', 'channel', 'C0BENCH', 'reviewers', jsonb_build_array('U0OWNER')),
       NULL, r - interval '10 minutes', r + interval '20 minutes',
       CASE WHEN g >= 50000 THEN 'pending' WHEN g % 25 < 2 THEN 'wrong' ELSE 'ok' END,
       CASE WHEN g >= 50000 THEN NULL ELSE 'U0OWNER' END, CASE WHEN g >= 50000 THEN NULL ELSE r END,
       NULL, NULL, 'C0BENCH', '1.' || g
FROM (SELECT g, :now - (g::double precision / 50000) * interval '30 days' + interval '5 minutes' AS r
      FROM generate_series(0, 50299) AS g) AS s;

-- Ten model changes a day across the processes (each changes about every 20 days).
INSERT INTO model_changes (process_id, from_model, to_model, at, reported_by)
SELECT 'p' || lpad((g * 7 % :procs)::text, 3, '0'), 'vendor:m' || g, 'vendor:m' || (g + 1),
       :now - (g::double precision / 300) * interval '30 days' - interval '1 minute', 'bench'
FROM generate_series(0, 299) AS g;

INSERT INTO slack_messages (escalation_id, kind, recipient, channel, ts, created_at)
SELECT 'esc_' || lpad((g * 5)::text, 8, '0'), 'note', '1', 'C0BENCH', '1.' || g, :now
FROM generate_series(0, :escs / 5 - 1) AS g;
"""


def seed(url: str) -> float:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    upgrade(url)
    started = time.perf_counter()
    params = {"now": NOW, "procs": PROCESSES, "entries": ENTRIES, "escs": ESCALATIONS}
    with engine.begin() as conn:
        for statement in SEED.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), params)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does to a table this size anyway
    engine.dispose()
    return time.perf_counter() - started


def registry() -> Registry:
    return Registry(RegistryFile.model_validate({"processes": [
        {"id": f"p{i:03d}", "name": f"Process {i}", "tier": i % 5, "channel": "C0BENCH",
         "raci": {"escalation": f"U0OWNER{i % 17}", "accountable": "U0DRI"},
         "approvals": {"compliance": ["U0COMP"]}, "capability": "draft", "rollback": "Undo it by hand",
         "budget": {"daily_usd": 5}}
        for i in range(PROCESSES)]}))


def timed(fn) -> list[float]:
    fn()  # warm the connection pool and the plan cache, as a running bot would be
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return runs


def main() -> int:
    seconds = seed(URL)
    db = Database(URL)
    reg = registry()
    ids = [p.id for p in reg.all()]
    since = days_back(NOW, NOW.tzinfo, 1)
    with db.engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar_one()
        rows = conn.exec_driver_sql("SELECT count(*) FROM changelog").scalar_one()
        escs = conn.exec_driver_sql("SELECT count(*) FROM escalations").scalar_one()

    def all_scorecards():
        with db.transaction() as s:
            cards = scorecards(s, ids, since, NOW, now=NOW)
        assert len(cards) == PROCESSES

    def digest_data():
        with db.transaction() as s:
            d = build_digest(s, reg, since, NOW, "UTC", now=NOW)
        assert len(d.lines) == PROCESSES and d.totals["actions"] > 0 and d.qa_lines and d.flags

    collector = DatabaseCollector(db, Outbox(db))

    def scrape():
        list(collector.collect())

    print(f"PostgreSQL {version}; {rows:,} change-log rows, {escs:,} escalations, {PROCESSES} processes "
          f"(seeded in {seconds:.1f} s)")
    for name, fn in (("every scorecard (200 processes, 1 day)", all_scorecards),
                     ("digest data (scorecards + 8-day history + hygiene)", digest_data),
                     ("/metrics collect", scrape)):
        runs = timed(fn)
        print(f"{name}: best {min(runs) * 1000:.0f} ms, median {statistics.median(runs) * 1000:.0f} ms "
              f"over {RUNS} runs")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
