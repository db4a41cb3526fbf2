"""Acceptance (issue 5): scorecard numbers against a seeded history whose every duration is known,
the same on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from bot.domain import changelog, escalations
from bot.domain.scorecard import is_overdue, percentile_cont, scorecard, scorecards
from bot.ops import clock
from tests.helpers import open_escalation

SINCE = datetime(2026, 11, 25, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def at(hh_mm: str, day: datetime = SINCE) -> str:
    h, m = hh_mm.split(":")
    return (day + timedelta(hours=int(h), minutes=int(m))).strftime("%Y-%m-%d %H:%M:%S")


def action(services, process_id: str, when: datetime) -> None:
    with services.db.transaction() as s:
        changelog.append(s, {"process_id": process_id, "timestamp": clock.iso(when), "model": "m", "inputs": {},
                             "tools_invoked": [], "policy_checks": [], "decision": "did_it",
                             "human_escalation": False, "owner": "U0DRI"})


def seed(services) -> dict[str, str]:
    """The history: every escalation opened and decided at a known time."""
    ids: dict[str, str] = {}
    for hour in range(1, 8):
        action(services, "refunds", SINCE + timedelta(hours=hour))
    action(services, "refunds", SINCE - timedelta(seconds=1))  # before the window
    action(services, "refunds", UNTIL)  # the window's end is exclusive
    for minute in (1, 2, 3):
        action(services, "deploys", SINCE + timedelta(hours=9, minutes=minute))

    with freeze_time(at("22:00", SINCE - timedelta(days=1))) as frozen:
        ids["F"] = open_escalation(services)  # opened and decided the day before: not in the window
        frozen.tick(timedelta(minutes=10))
        assert escalations.decide(services.db, ids["F"], "U0ESCOWNER", "approve").result == "decided"
    with freeze_time(at("22:30", SINCE - timedelta(days=1))):
        ids["G"] = open_escalation(services)  # opened the day before, decided in the window after 5400 s
    with freeze_time(at("00:00")):
        assert escalations.decide(services.db, ids["G"], "U0ESCOWNER", "approve").result == "decided"

    with freeze_time(at("10:00")) as frozen:
        for name in ("A1", "A2", "A3", "A4", "A5"):
            ids[name] = open_escalation(services, action={"summary": f"Refund {name}"})
        start = clock.now()
        for name, seconds, vote in (("A1", 60, "approve"), ("A2", 120, "reject"), ("A3", 300, "approve"),
                                    ("A4", 600, "approve"), ("A5", 1800, "reject")):
            frozen.move_to(start + timedelta(seconds=seconds))
            assert escalations.decide(services.db, ids[name], "U0ESCOWNER", vote).result == "decided"

    with freeze_time(at("11:00")) as frozen:
        ids["C"] = open_escalation(services, expires_in_s=600)
        frozen.tick(timedelta(seconds=600))
        assert escalations.expire_due(services.db) == 1

    with freeze_time(at("12:00")) as frozen:
        ids["B"] = open_escalation(services, expires_in_s=7200, action={"summary": "Refund <!channel> B"})
        services.tick()
        frozen.tick(timedelta(minutes=15))
        services.tick()  # re-page 1
        frozen.tick(timedelta(minutes=15))
        services.tick()  # re-page 2
        frozen.tick(timedelta(minutes=1))
        assert escalations.acknowledge(services.db, ids["B"], "U0ESCOWNER").result == "acknowledged"

    with freeze_time(at("13:00")) as frozen:
        ids["D"] = open_escalation(services, process_id="summaries", action={"summary": "Post the summary"})
        frozen.tick(timedelta(minutes=5))
        assert escalations.acknowledge(services.db, ids["D"], "U0ESCOWNER").result == "acknowledged"
        frozen.tick(timedelta(minutes=5))
        ids["E"] = open_escalation(services)  # 13:10, four hours to decide: pending, not overdue
    return ids


def test_scorecard_numbers_from_a_seeded_history(services, stub):
    ids = seed(services)
    now = datetime(2026, 11, 25, 13, 20, tzinfo=UTC)
    with services.db.transaction() as s:
        cards = scorecards(s, ["refunds", "summaries", "deploys", "kyc"], SINCE, UNTIL, now=now)
        single = scorecard(s, "refunds", SINCE, UNTIL, now=now)
        everything = scorecards(s, None, SINCE, UNTIL, now=now)

    r = cards["refunds"]
    assert (r.actions, r.escalations) == (7, 8)  # A1-A5, B, C, E
    assert r.escalation_rate == 8 / 15
    assert (r.approved, r.rejected, r.expired, r.acknowledged, r.cancelled) == (4, 2, 1, 0, 0)  # G counts
    # Latencies 60, 120, 300, 600, 1800, 5400: interpolated like PostgreSQL's percentile_cont.
    assert (r.median_decision_s, r.p90_decision_s) == (450.0, 3600.0)
    assert r.repages == 2
    assert (r.pending, r.overdue) == (2, 1)  # B (acknowledged, tier 2) and E; B is past half of its 2 h
    [item] = r.overdue_items
    assert (item.id, item.summary, item.owner, item.status) == (ids["B"], "Refund <!channel> B", "U0ESCOWNER",
                                                                "acknowledged")
    assert item.age_s == 80 * 60
    assert single == r

    s_ = cards["summaries"]
    assert (s_.actions, s_.escalations, s_.escalation_rate, s_.acknowledged, s_.pending) == (0, 1, 1.0, 1, 0)
    assert s_.median_decision_s is None  # acknowledging is not deciding
    d = cards["deploys"]
    assert (d.actions, d.escalations, d.escalation_rate, d.pending) == (3, 0, 0.0, 0)
    k = cards["kyc"]
    assert (k.actions, k.escalations, k.escalation_rate, k.median_decision_s, k.quiet) == (0, 0, 0.0, None, True)
    assert set(everything) == {"refunds", "summaries", "deploys"} and everything["refunds"] == r
    assert stub.violations == []


def test_the_window_decides_what_counts(services, stub):
    seed(services)
    now = datetime(2026, 11, 25, 13, 20, tzinfo=UTC)
    with services.db.transaction() as s:
        morning = scorecard(s, "refunds", SINCE, SINCE + timedelta(hours=10, minutes=5), now=now)
        yesterday = scorecard(s, "refunds", SINCE - timedelta(days=1), SINCE, now=now)
    assert (morning.actions, morning.escalations, morning.approved, morning.rejected) == (7, 5, 2, 1)  # G, A1-A2
    assert (morning.median_decision_s, morning.p90_decision_s) == (120.0, 4344.0)
    assert (yesterday.actions, yesterday.escalations, yesterday.approved) == (1, 2, 1)
    assert (yesterday.median_decision_s, yesterday.repages) == (600.0, 0)
    assert (yesterday.pending, morning.pending) == (2, 2)  # "pending" is always now


def test_overdue_rule_is_half_the_decision_window():
    created = datetime(2026, 1, 1, tzinfo=UTC)
    expires = created + timedelta(hours=4)
    assert not is_overdue(created, expires, created + timedelta(hours=2))
    assert is_overdue(created, expires, created + timedelta(hours=2, seconds=1))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_python_percentile_matches_postgresql(db):
    rng = random.Random(5)
    with db.engine.connect() as conn:
        for n in (1, 2, 3, 7, 10, 51):
            values = sorted(rng.randint(1, 100_000) / rng.choice((1, 7, 1000)) for _ in range(n))
            for p in (0.5, 0.9):
                got = conn.execute(text("SELECT percentile_cont(:p) WITHIN GROUP (ORDER BY x) "
                                        "FROM unnest(CAST(:v AS double precision[])) AS x"), {"p": p, "v": values})
                assert got.scalar_one() == percentile_cont(values, p)
