"""The change log: one entry per outcome, hash-chained per process; verify finds tampering."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from bot import changelog, clock
from tests.helpers import check_spec_entry
from tests.test_registry import aopbot


def seed(db, n: int = 5, process_id: str = "refunds") -> None:
    for i in range(n):
        with db.transaction() as s:
            changelog.append(s, {
                "process_id": process_id, "timestamp": clock.iso(clock.now()), "model": "m", "inputs": {"i": i},
                "tools_invoked": ["crm.update"], "policy_checks": [], "decision": f"did_{i}",
                "human_escalation": False, "owner": "U0DRI",
            })


def verify(db):
    with db.transaction() as s:
        return changelog.verify(s)


def test_untouched_log_verifies(db):
    seed(db, 5)
    seed(db, 3, "deploys")
    checked, problems = verify(db)
    assert checked == 8 and problems == []


@pytest.mark.parametrize(("tamper", "seq", "words"), [
    ("UPDATE changelog SET body = REPLACE(body, 'did_2', 'did_X') WHERE seq = 3 AND process_id = 'refunds'",
     3, "edited"),
    ("DELETE FROM changelog WHERE seq = 2 AND process_id = 'refunds'", 2, "deleted"),
    ("DELETE FROM changelog WHERE seq = 5 AND process_id = 'refunds'", 5, "deleted from the end"),
    ("UPDATE changelog SET seq = CASE seq WHEN 2 THEN 4 WHEN 4 THEN 2 END "
     "WHERE seq IN (2, 4) AND process_id = 'refunds'", 2, ""),
])
def test_verify_names_the_tampered_entry(db, tamper, seq, words):
    seed(db, 5)
    seed(db, 2, "deploys")
    with db.engine.begin() as conn:
        if "CASE seq" in tamper:  # swap two rows without tripping the unique (process_id, seq)
            conn.execute(text("UPDATE changelog SET seq = -seq WHERE seq IN (2, 4) AND process_id = 'refunds'"))
            conn.execute(text("UPDATE changelog SET seq = CASE seq WHEN -2 THEN 4 WHEN -4 THEN 2 END "
                              "WHERE seq IN (-2, -4) AND process_id = 'refunds'"))
        else:
            conn.execute(text(tamper))
    _, problems = verify(db)
    assert [(p.process_id, p.seq) for p in problems] == [("refunds", seq)]
    assert words in problems[0].problem


def test_cli_verify_and_export(db, settings):
    seed(db, 3)
    env = {"DATABASE_URL": settings.database_url}
    ok = aopbot("changelog", "verify", env=env)
    assert ok.returncode == 0 and "3 entries checked, 0 broken" in ok.stdout
    exported = aopbot("changelog", "export", "--process", "refunds", env=env)
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    for e in entries:
        check_spec_entry(e)
        assert e["hash"] and e["prev_hash"]
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE changelog SET body = REPLACE(body, 'did_1', 'did_9') WHERE seq = 2"))
    bad = aopbot("changelog", "verify", env=env)
    assert bad.returncode == 1 and "BROKEN refunds seq 2" in bad.stdout
