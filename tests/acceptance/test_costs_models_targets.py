"""Acceptance (issue 14, points 3-5): spend tied to outcomes, model changes tested before and after,
attainment of the decision target. Seeded through the agent's own paths, read where people look."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.api.schemas import ChangelogRecord, EscalationSignal
from bot.domain import escalations, intake, qa, records, tokens
from bot.domain.models import AgentToken, QaReview
from bot.ops import clock
from bot.sandbox.records import message_text
from bot.surfaces import digest, digest_blocks
from tests.conftest import REGISTRY_FIXTURE


@pytest.fixture
def registry_path(tmp_path) -> Path:
    dst = tmp_path / "aops.yml"
    shutil.copy(REGISTRY_FIXTURE, dst)
    dst.write_text(dst.read_text().replace("    rollback: Reverse the refund in billing\n",
                                           "    rollback: Reverse the refund in billing\n    budget: {daily_usd: 1}\n"))
    return dst


def ask(slack, text: str) -> str:
    return message_text(slack.ask("U0ESCOWNER", text))


def digest_now(services) -> str:
    with services.db.transaction() as s:
        now = clock.now()
        return digest_blocks.digest_text(digest.build_digest(s, services.registry, now - timedelta(days=1), now,
                                                             "UTC", now))


def test_spend_per_action_per_escalation_and_per_approved_outcome(services, slack, agent):
    for cost in (0.10, 0.20, 0.60):
        resp = agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m", "decision": "done",
                                                          "cost_usd": cost})
        assert resp.status_code == 201, resp.text
        assert resp.json()["cost_usd"] == cost
    approved = agent.signal(cost_usd=0.05, idempotency_key="a").json()["id"]
    agent.signal(cost_usd=0.15, idempotency_key="b")
    escalations.decide(services.db, approved, "U0ESCOWNER", "approve")
    # By hand: actions 0.90 over 3 → 0.30; escalations 0.20 over 2 → 0.10; all 1.10 over what got done
    # (3 actions + 1 approved) → 0.275.
    expected = "pend $1.10 ($0.3000 per action, $0.1000 per escalation, $0.2750 per approved outcome)"
    assert "S" + expected in ask(slack, "stats refunds")
    text = digest_now(services)
    assert expected in text
    assert "Support refunds (refunds): spent $1.10 against a daily budget of $1.00" in text
    bad = agent.http.post("/api/v1/changelog", json={"process_id": "refunds", "model": "m", "decision": "x",
                                                     "cost_usd": -1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cost_usd"


def _seed(services, token, process_id: str, model: str, actions: int, escalated: int, start, step: timedelta):
    """actions agent records and escalated signals, interleaved, one every `step` from start."""
    every = max(1, (actions + escalated) // max(escalated, 1))
    at, done_esc = start, 0
    for i in range(actions + escalated):
        with freeze_time(at):
            if escalated and i % every == every - 1 and done_esc < escalated:
                signal = EscalationSignal(process_id=process_id, model=model, rollback_plan="revert",
                                          action={"summary": f"step {i}", "tools": ["billing.refund"]})
                intake.open_escalation(services.db, services.registry, token, signal)
                done_esc += 1
            else:
                records.record_action(services.db, services.registry, token, ChangelogRecord(
                    process_id=process_id, model=model, decision="done", tools_invoked=[]),
                    qa_key=services.settings.qa_key)
        at += step
    assert done_esc == escalated
    return at


def test_a_model_change_is_flagged_once_with_both_rates_and_its_p_value(services, slack, stub):
    with services.db.transaction() as s:
        new = tokens.create(s, ["refunds", "deploys"], "seed-agent", None)
    with services.db.transaction() as s:
        token = s.get(AgentToken, new.id)
        s.expunge(token)
    start = clock.now() - timedelta(hours=20)
    step = timedelta(seconds=30)  # stays under the rate limit of 60 signals a minute
    mid = _seed(services, token, "refunds", "vendor:model-a", 400, 21, start, step)  # 21/421 = 5 %
    end = _seed(services, token, "refunds", "vendor:model-b", 400, 100, mid, step)  # 100/500 = 20 %
    _seed(services, token, "deploys", "vendor:steady", 200, 20, start, step * 4)  # never changes
    assert end < clock.now()
    # The sampled actions are reviewed: all right on the old model, every one wrong on the new.
    with services.db.transaction() as s:
        sampled = s.execute(select(QaReview.id, QaReview.sampled_at).where(QaReview.process_id == "refunds")).all()
    for review_id, sampled_at in sampled:
        verdict = "qa_wrong" if sampled_at >= mid else "qa_ok"
        assert qa.review(services.db, review_id, "U0ESCOWNER", verdict, "checked").result == "reviewed"
    services.outbox.drain()
    notes = [m for m in stub.channel_messages("C0REFUNDS") + stub.channel_messages("C0DEPLOYS")
             if "now reports model" in message_text(m)]
    assert len(notes) == 1 and "vendor:model-b" in message_text(notes[0])
    text = digest_now(services)
    line = next(ln for ln in text.splitlines() if "model vendor:model-a → vendor:model-b" in ln)
    assert "escalation rate 5.0% before (21 of 421) vs 20.0% after (100 of 500)" in line
    assert "p = " in line and "significant shift" in line
    assert "QA error rate 0.0% before (0 wrong of " in line and "vs 100.0% after (" in line
    assert "vendor:steady" not in text and "Dependency bumps (deploys): model" not in text
    assert "escalation rate 5.0% before (21 of 421)" in ask(slack, "stats refunds")
    assert "model" not in ask(slack, "stats deploys").split("Re-pages")[1]


def test_attainment_of_the_tier_target(services, slack, agent):
    start = clock.now() - timedelta(hours=3)
    began = clock.iso(start - timedelta(minutes=5))  # the agent started each case 5 minutes before escalating
    with freeze_time(start):
        ids = [agent.signal(idempotency_key=f"t{i}", started_at=began).json()["id"] for i in range(3)]
    for minutes, esc_id in zip((10, 20, 40), ids, strict=True):
        with freeze_time(start + timedelta(minutes=minutes)):
            escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
    stats = ask(slack, "stats refunds")
    assert "*66.7%* within the 30m target (2 of 3)" in stats
    assert "Cycle time (agent start → outcome): median *25m*, p90 *41m*" in stats  # 15, 25, 45 min
    text = digest_now(services)
    assert "66.7% within the 30m target" in text
    assert "Support refunds (refunds): 66.7% decided within the 30m target (2 of 3)" in text
