"""Acceptance (issue 13): the SLO card, a real kill switch, the allowlist everywhere, review cadence
and lifecycle, departed owners. Through signed Slack requests and the agent API over HTTP."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.domain.models import ChangelogEntry
from bot.ops import clock
from bot.sandbox.records import message_text
from bot.surfaces import digest, digest_blocks
from tests.conftest import REGISTRY_FIXTURE
from tests.procs import aopbot
from tests.webhooks import verify

TODAY = clock.now().date()
EXTRA = f"""
  - id: drafts
    name: Reply drafts
    tier: 1
    channel: C0DRAFTS
    capability: draft
    blast_radius: A wrong draft a person might send
    raci: {{accountable: U0DRI, escalation: U0ESCOWNER}}
  - id: oldpilot
    name: Old pilot
    tier: 1
    channel: C0PILOT
    capability: act
    blast_radius: Nothing much
    stage: pilot
    started: {(TODAY - timedelta(days=91)).isoformat()}
    raci: {{escalation: U0ESCOWNER}}
  - id: sunset
    name: Sunset process
    tier: 1
    channel: C0SUNSET
    capability: act
    blast_radius: Nothing
    stage: retired
    raci: {{escalation: U0ESCOWNER}}
  - id: leaver
    name: Owned by a leaver
    tier: 1
    channel: C0LEAVER
    capability: act
    raci: {{accountable: U0DRI, escalation: U0GONE}}
"""


@pytest.fixture
def registry_path(tmp_path) -> Path:
    """The tests' registry, plus a draft, an old pilot, a retired process and one owned by a leaver;
    the tier-3 process was last reviewed 8 days ago."""
    dst = tmp_path / "aops.yml"
    shutil.copy(REGISTRY_FIXTURE, dst)
    text = dst.read_text().replace("    rollback: Revert the PR\n", "    rollback: Revert the PR\n    review: {last: "
                                   f"{(TODAY - timedelta(days=8)).isoformat()}}}\n")
    dst.write_text(text + EXTRA)
    return dst


def ask(slack, text: str, user: str = "U0ESCOWNER") -> str:
    return message_text(slack.ask(user, text))


def record(agent, **body):
    body = {"process_id": "refunds", "model": "m", "decision": "refunded", **body}
    return agent.http.post("/api/v1/changelog", json=body)


def test_pause_with_cancel_open_is_a_kill_switch_in_the_change_log(services, slack, make_agent, receivers, db_url):
    agent = make_agent(processes=("refunds",))
    hook = receivers()
    esc_id = agent.signal(callback_url=hook.url).json()["id"]
    services.outbox.drain()
    assert record(agent).status_code == 201

    answer = ask(slack, "pause refunds refunds going to the wrong accounts --cancel-open")
    assert "Paused `refunds`" in answer and "1 open escalation(s) cancelled" in answer
    for resp in (agent.signal(idempotency_key="after-pause"), record(agent)):
        assert resp.status_code == 423, resp.text
        assert "paused by U0ESCOWNER: refunds going to the wrong accounts" in resp.json()["message"]
    assert agent.get(esc_id)["status"] == "cancelled"
    assert agent.get(esc_id)["decided_by"] == "U0ESCOWNER"

    services.callbacks.drain()
    bodies = {b.get("event") or b["status"]: b for b in (json.loads(body) for body, _ts, _sig in hook.received)}
    assert sorted(bodies) == ["cancelled", "process_paused"]  # each once, in their own lanes
    event = bodies["process_paused"]
    assert event["paused_by"] == "U0ESCOWNER" and event["reason"] == "refunds going to the wrong accounts"
    assert event["escalation_cancelled"] is True
    assert all(verify(agent.callback_secret, body, ts, sig) for body, ts, sig in hook.received)

    assert "Resumed `refunds`" in ask(slack, "resume refunds")
    assert agent.signal(idempotency_key="after-resume").status_code == 201
    assert record(agent).status_code == 201

    log = ask(slack, "log refunds")
    assert "control · *paused* by <@U0ESCOWNER>" in log and "control · *resumed* by <@U0ESCOWNER>" in log
    with services.db.transaction() as s:
        decisions = list(s.scalars(select(ChangelogEntry.decision).where(ChangelogEntry.process_id == "refunds")
                                   .order_by(ChangelogEntry.seq)))
    assert decisions == ["refunded", "paused", "cancelled", "resumed", "refunded"]
    verified = aopbot("changelog", "verify", env={"DATABASE_URL": db_url})
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_pause_without_cancel_open_leaves_escalations_decidable_and_says_so_on_the_card(services, slack, agent,
                                                                                          stub):
    esc_id = agent.signal().json()["id"]
    services.outbox.drain()
    ask(slack, "pause refunds checking a bad refund")
    services.outbox.drain()
    thread = [m for m in stub.channel_messages("C0REFUNDS") if m.thread_ts and esc_id in json.dumps(m.blocks)][0]
    text = message_text(thread)
    assert "The process is paused" in text and "checking a bad refund" in text
    assert "aop_approve" in json.dumps(thread.blocks)  # still decidable
    assert agent.get(esc_id)["status"] == "pending"


def test_the_allowlist_holds_everywhere_and_refusals_are_counted(services, slack, make_agent):
    agent = make_agent(processes=("refunds", "drafts"))
    resp = record(agent, tools_invoked=["billing.refund", "shell.exec"])
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "tools_invoked[1]" and "'shell.exec'" in resp.json()["message"]
    signal = agent.signal(action={"summary": "Run it", "tools": ["shell.exec"]})
    assert signal.status_code == 422 and signal.json()["errors"][0]["field"] == "action.tools[0]"
    drafted = record(agent, process_id="drafts", tools_invoked=["mail.send"])
    assert drafted.status_code == 422 and "only drafts" in drafted.json()["message"]
    assert record(agent, process_id="drafts").status_code == 201  # a draft recorded without tools is fine
    assert "boundary violations 2" in ask(slack, "who refunds")
    assert "boundary violations 1" in ask(slack, "who drafts")


def test_a_retired_process_refuses_with_410_and_who_says_so(slack, make_agent):
    agent = make_agent(processes=("sunset",))
    for resp in (agent.signal(process_id="sunset"), record(agent, process_id="sunset")):
        assert resp.status_code == 410, resp.text
        assert resp.json()["error"] == "process_retired" and "retired" in resp.json()["message"]
    assert "*retired*" in ask(slack, "who sunset")


def test_reviews_and_pilots_due_in_the_digest_and_review_clears_it(services, slack):
    def due_lines(days_later: int = 0) -> str:
        with freeze_time(clock.now() + timedelta(days=days_later)), services.db.transaction() as s:
            now = clock.now()
            built = digest.build_digest(s, services.registry, now - timedelta(days=1), now, "UTC", now)
        return digest_blocks.digest_text(built)

    text = due_lines()
    assert "Reviews and pilots due:" in text
    assert f"Dependency bumps (deploys): review due: last reviewed {TODAY - timedelta(days=8)}" in text
    assert "Old pilot (oldpilot): pilot for 91 days" in text and "scale it or kill it" in text
    assert "Support refunds (refunds): review" not in text

    assert "Only the accountable or escalation owner" in ask(slack, "review deploys looks fine", user="U0PM")
    assert "Review of `deploys` recorded" in ask(slack, "review deploys walked through the last 10 PRs",
                                                 user="U0DRI")
    text = due_lines()
    assert "Dependency bumps (deploys)" not in text and "Old pilot (oldpilot)" in text
    later = due_lines(days_later=8)  # a tier-3 process is reviewed every 7 days: due again a week on
    assert f"Dependency bumps (deploys): review due: last reviewed {clock.now().date()}" in later
    assert "reviewed" in ask(slack, "log deploys") and "walked through the last 10 PRs" in ask(slack, "log deploys")


def test_a_deactivated_owner_and_a_missing_blast_radius_show_on_the_card_and_in_the_digest(services, slack, stub):
    stub.add_user("U0GONE", "Gone Person", deleted=True)
    services.queue_people_check()
    services.outbox.drain()
    card = ask(slack, "who leaver")
    assert "escalation owner U0GONE has left (deactivated in Slack)" in card
    assert "no blast_radius" in card
    with services.db.transaction() as s:
        now = clock.now()
        text = digest_blocks.digest_text(digest.build_digest(s, services.registry, now - timedelta(days=1), now,
                                                             "UTC", now))
    assert "Owned by a leaver (leaver): escalation owner U0GONE has left (deactivated in Slack)" in text
    assert "Owned by a leaver (leaver): no blast_radius" in text
    assert "Support refunds (refunds)" not in text.split("Ownership hygiene:")[1].split("\n\n")[0]
