"""The change log: one entry per outcome, hash-chained per process; verify finds tampering."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from bot.domain import changelog
from bot.ops import clock
from tests.helpers import check_spec_entry
from tests.procs import aopbot


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


def test_verify_catches_an_entry_appended_behind_the_chains_back(db):
    """Someone inserts a well-formed entry (even with a correct hash) without going through append."""
    seed(db, 3)
    with db.transaction() as s:
        entry = changelog.latest(s, "refunds", 1)[0]
    body = dict(entry, seq=4, prev_hash=entry["hash"], decision="forged")
    body.pop("hash")
    text_body = changelog.canonical(body)
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO changelog (process_id, seq, timestamp, escalation_id, human_escalation, "
                          "decision, body, hash) VALUES ('refunds', 4, :ts, NULL, false, 'forged', :body, :hash)"),
                     {"ts": clock.now(), "body": text_body, "hash": changelog.chain_hash(entry["hash"], text_body)})
    _, problems = verify(db)
    assert [(p.process_id, p.seq) for p in problems] == [("refunds", 4)]


def test_agent_records_an_action_without_escalation(agent, make_agent):
    resp = agent.http.post("/api/v1/changelog", json={
        "process_id": "refunds", "model": "vendor:model-name", "inputs": {"ticket_id": "9"},
        "tools_invoked": ["crm.update"], "policy_checks": ["pii_redaction"], "decision": "updated_crm_note"})
    assert resp.status_code == 201, resp.text
    stored = resp.json()
    check_spec_entry(stored)
    assert stored["human_escalation"] is False and stored["owner"] == "U0DRI" and stored["seq"] == 1
    lines = agent.http.get("/api/v1/changelog", params={"process_id": "refunds"}).text.splitlines()
    assert [json.loads(x)["decision"] for x in lines] == ["updated_crm_note"]

    bad = agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m", "decision": "x",
                                                     "human_escalation": True})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "human_escalation"
    missing = agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "decision": "x"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "model"
    other = make_agent(processes=["kyc"])
    assert other.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m",
                                                      "decision": "x"}).status_code == 403
    assert other.http.get("/api/v1/changelog", params={"process_id": "refunds"}).status_code == 403
    assert agent.http.get("/api/v1/changelog", params={"since": "yesterday"}).status_code == 422


def test_a_record_carries_the_action_hash_of_the_approval_it_carries_out(agent):
    """SPEC §4: a record may name the approved action it carries out; without one the entry is as before."""
    approved = "b9dcd5ba020c36d1b7ea2f4620d328f89bfdff279f9c19199697624e1e939742"
    body = {"process_id": "refunds", "model": "m", "decision": "refunded $120", "tools_invoked": ["billing.refund"]}
    resp = agent.http.post("/api/v1/changelog", json={**body, "action_hash": approved})
    assert resp.status_code == 201, resp.text
    assert resp.json()["action_hash"] == approved
    assert "action_hash" not in agent.http.post("/api/v1/changelog", json=body).json()
    bad = agent.http.post("/api/v1/changelog", json={**body, "action_hash": "not-a-hash"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "action_hash"
    lines = agent.http.get("/api/v1/changelog", params={"process_id": "refunds"}).text.splitlines()
    assert [json.loads(x).get("action_hash") for x in lines] == [approved, None]


def test_a_tool_outside_the_allowlist_is_refused_in_a_record_too(agent):
    resp = agent.http.post("/api/v1/changelog", json={
        "process_id": "refunds", "model": "m", "decision": "ran a shell",
        "tools_invoked": ["crm.update", "shell.exec"]})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "tools_invoked[1]"
    assert "shell.exec" in resp.json()["message"]
    assert agent.http.get("/api/v1/changelog", params={"process_id": "refunds"}).text == ""


def test_a_paused_process_refuses_records_with_who_and_why(services, agent):
    from bot.domain import processes

    processes.set_paused(services.db, services.registry.get("refunds"), "U0DRI", True, "refund loop", None)
    record = {"process_id": "refunds", "model": "m", "decision": "refunded", "tools_invoked": ["billing.refund"]}
    paused = agent.http.post("/api/v1/changelog", json=record)
    assert paused.status_code == 423, paused.text
    assert "U0DRI" in paused.json()["message"] and "refund loop" in paused.json()["message"]
    processes.set_paused(services.db, services.registry.get("refunds"), "U0DRI", False, None, None)
    assert agent.http.post("/api/v1/changelog", json=record).status_code == 201


# -- scheme 2: every stored column is inside the hash; heads anchored outside the database ----------


@pytest.mark.parametrize("tamper", [
    "UPDATE changelog SET timestamp = :early WHERE seq = 2",  # hides the entry from ?since= and the scorecard
    "UPDATE changelog SET decision = 'did_nothing' WHERE seq = 2",
    "UPDATE changelog SET human_escalation = true WHERE seq = 2",
    "UPDATE changelog SET escalation_id = 'E0FORGED' WHERE seq = 2",
    "UPDATE changelog SET hash_version = 1 WHERE seq = 2",  # a downgrade to the weaker scheme
])
def test_every_column_of_an_entry_is_inside_its_hash(db, tamper):
    seed(db, 3)
    with db.engine.begin() as conn:
        conn.execute(text(tamper), {"early": clock.now().replace(year=2020)} if ":early" in tamper else {})
    _, problems = verify(db)
    assert [(p.process_id, p.seq) for p in problems] == [("refunds", 2)]
    assert "edited" in problems[0].problem


def test_entries_are_rfc8785_and_say_their_scheme(db):
    seed(db, 1)
    with db.transaction() as s:
        entry = changelog.latest(s, "refunds", 1)[0]
        body = s.execute(text("SELECT body FROM changelog")).scalar_one()
    assert entry["hash_version"] == 2
    assert body == changelog.jcs(json.loads(body))  # stored canonical, byte for byte


def rewind(db, process_id: str, to_seq: int) -> None:
    """What an attacker with the database does to hide the last entries: cut the chain and make the
    head row agree."""
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM changelog WHERE process_id = :p AND seq > :n"), {"p": process_id, "n": to_seq})
        row = conn.execute(text("SELECT hash FROM changelog WHERE process_id = :p AND seq = :n"),
                           {"p": process_id, "n": to_seq}).one()
        conn.execute(text("UPDATE changelog_heads SET seq = :n, hash = :h WHERE process_id = :p"),
                     {"p": process_id, "n": to_seq, "h": row.hash})


def test_tail_cut_with_the_head_rewound_is_caught_by_the_published_heads(db, settings, tmp_path):
    seed(db, 5)
    seed(db, 2, "deploys")
    env = {"DATABASE_URL": settings.database_url}
    published = aopbot("changelog", "heads", env=env)
    assert published.returncode == 0
    heads = [json.loads(line) for line in published.stdout.splitlines()]
    assert [(h["process_id"], h["seq"]) for h in heads] == [("deploys", 2), ("refunds", 5)]
    anchors = tmp_path / "heads.ndjson"
    anchors.write_text(published.stdout)

    rewind(db, "refunds", 3)
    alone = aopbot("changelog", "verify", env=env)
    assert alone.returncode == 0  # the database alone cannot tell: that is why heads are published
    held = aopbot("changelog", "verify", "--anchors", str(anchors), env=env)
    assert held.returncode == 1, held.stdout
    assert "BROKEN refunds seq 5: chain ends at seq 3 but its head was published at seq 5" in held.stdout
    assert "deploys" not in held.stdout


def test_a_whole_chain_deleted_is_caught_by_the_published_heads(db, settings, tmp_path):
    seed(db, 2)
    seed(db, 2, "deploys")
    env = {"DATABASE_URL": settings.database_url}
    anchors = tmp_path / "heads.ndjson"
    anchors.write_text(aopbot("changelog", "heads", env=env).stdout)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM changelog WHERE process_id = 'deploys'"))
        conn.execute(text("DELETE FROM changelog_heads WHERE process_id = 'deploys'"))
    assert aopbot("changelog", "verify", env=env).returncode == 0
    held = aopbot("changelog", "verify", "--anchors", str(anchors), env=env)
    assert held.returncode == 1 and "BROKEN deploys seq 2: the whole chain is gone" in held.stdout


def test_unreadable_anchors_are_an_error_not_a_pass(db, settings, tmp_path):
    bad = tmp_path / "heads.ndjson"
    bad.write_text('{"process_id": "refunds", "seq": 1}\n')
    result = aopbot("changelog", "verify", "--anchors", str(bad), env={"DATABASE_URL": settings.database_url})
    assert result.returncode == 2 and "line 1" in result.stderr


def test_an_append_rebuilds_a_deleted_head_row_and_says_so(db, caplog):
    seed(db, 3)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM changelog_heads WHERE process_id = 'refunds'"))
    _, problems = verify(db)
    assert [(p.seq, "head row is missing" in p.problem) for p in problems] == [(3, True)]
    seed(db, 1)  # used to fail for ever on the unique (process_id, seq)
    checked, problems = verify(db)
    assert checked == 4 and problems == []
    assert "change-log head of refunds was missing: rebuilt from its last entry (seq 3)" in caplog.text
