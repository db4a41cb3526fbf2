"""`aopbot migrate` builds the schema from Alembic revisions; /readyz reports a schema behind head."""

from __future__ import annotations

from sqlalchemy import inspect

from bot.domain.models import Base
from bot.ops.db import make_engine
from bot.ops.migrate import is_current
from tests.procs import aopbot


def test_migrate_creates_every_table_at_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = aopbot("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    engine = make_engine(url)
    assert is_current(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    again = aopbot("migrate", env={"DATABASE_URL": url})  # idempotent
    assert again.returncode == 0


def test_serve_refuses_an_unmigrated_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = aopbot("serve", env={"DATABASE_URL": url, "PORT": "0"})
    assert result.returncode == 2 and "aopbot migrate" in result.stderr


def test_models_and_migrations_agree(db):
    """Every schema change is an Alembic revision: the migrated database matches the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_previous_release_log_migrates_in_place_and_still_verifies(db):
    """Entries written before migration 0006 (hash scheme 1, over the body only) keep verifying as
    they were hashed; new ones chain on under scheme 2; an old row's columns are held to its body."""
    from alembic import command
    from sqlalchemy import text

    from bot.domain import changelog
    from bot.ops import clock
    from bot.ops.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db.url), "0005")
    try:
        prev = changelog.GENESIS
        with db.engine.begin() as conn:
            for seq in (1, 2):
                body = changelog.canonical({
                    "process_id": "refunds", "timestamp": f"2026-11-01T10:00:0{seq}Z", "model": "m", "inputs": {},
                    "tools_invoked": [], "policy_checks": [], "decision": f"old_{seq}", "human_escalation": False,
                    "owner": "U0DRI", "seq": seq, "prev_hash": prev})
                digest = changelog.chain_hash(prev, body)
                conn.execute(text("INSERT INTO changelog (process_id, seq, timestamp, escalation_id, human_escalation,"
                                  " decision, body, hash) VALUES ('refunds', :seq, :ts, NULL, false, :d, :body, :h)"),
                             {"seq": seq, "ts": clock.parse_iso(f"2026-11-01T10:00:0{seq}Z"), "d": f"old_{seq}",
                              "body": body, "h": digest})
                prev = digest
            conn.execute(text("INSERT INTO changelog_heads (process_id, seq, hash) VALUES ('refunds', 2, :h)"),
                         {"h": prev})
    finally:
        upgrade(db.url)
    with db.transaction() as s:
        changelog.append(s, {"process_id": "refunds", "timestamp": clock.iso(clock.now()), "model": "m",
                             "inputs": {}, "tools_invoked": [], "policy_checks": [], "decision": "new",
                             "human_escalation": False, "owner": "U0DRI"})
    with db.transaction() as s:
        checked, problems = changelog.verify(s)
        versions = [e["hash_version"] for e in changelog.iter_all(s, "refunds")]
    assert (checked, problems, versions) == (3, [], [1, 1, 2])
    with db.engine.begin() as conn:  # scheme 1 never hashed this column; the body still gives it away
        conn.execute(text("UPDATE changelog SET timestamp = :t WHERE seq = 1"),
                     {"t": clock.parse_iso("2020-01-01T00:00:00Z")})
    with db.transaction() as s:
        _, problems = changelog.verify(s)
    assert [(p.seq, p.problem) for p in problems] == [(1, "timestamp differs from the entry's own (edited)")]
