"""Acceptance (issue 14): sampling QA of recorded agent actions, reviewed in Slack, and the error
rate that comes of it. Through the agent API over HTTP and signed Slack requests."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.api.schemas import ChangelogRecord, QaVerdict
from bot.domain import changelog, qa, records, tokens
from bot.domain.models import AgentToken, ChangelogEntry, QaReview
from bot.ops import clock
from bot.ops.db import Database
from bot.sandbox.records import Message, buttons, message_text
from bot.surfaces import digest, digest_blocks, qa_blocks
from tests.acceptance.test_digest import metric
from tests.conftest import REGISTRY_FIXTURE, wait_for
from tests.helpers import click, ephemerals_to
from tests.procs import aopbot
from tests.slack_requests import view_submission
from tests.webhooks import verify

EXTRA = """
  - id: checked
    name: Checked refunds
    tier: 2
    channel: C0CHECKED
    capability: act
    allowed_tools: [billing.refund]
    blast_radius: A wrong refund
    raci: {accountable: U0DRI, escalation: U0ESCOWNER}
    redact: [inputs.email]
    qa: {sample_rate: 1, reviewers: [U0ESCOWNER, S0REFUNDERS], max_error_rate: 0.03}
  - id: sampled
    name: Sampled refunds
    tier: 2
    channel: C0SAMPLED
    capability: act
    allowed_tools: [billing.refund]
    blast_radius: A wrong refund
    raci: {accountable: U0DRI, escalation: U0ESCOWNER}
    qa: {sample_rate: 0.05}
"""


@pytest.fixture
def registry_path(tmp_path) -> Path:
    dst = tmp_path / "aops.yml"
    shutil.copy(REGISTRY_FIXTURE, dst)
    dst.write_text(dst.read_text() + EXTRA)
    return dst


def record(agent, i: int, process_id: str = "checked", **body):
    body = {"process_id": process_id, "model": "vendor:model-a", "decision": f"refunded ticket {i}",
            "timestamp": f"2026-11-02T10:{i // 60 % 60:02d}:{i % 60:02d}Z", "inputs": {"ticket": str(i)},
            "tools_invoked": ["billing.refund"], "policy_checks": ["refund_limit_500"], **body}
    resp = agent.http.post("/api/v1/changelog", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def cards(stub, channel: str) -> list[Message]:
    return [m for m in stub.channel_messages(channel) if '"aop_qa_' in json.dumps(m.blocks)
            or any('"aop_qa_' in json.dumps(h) for h in m.history)]


def test_a_sampled_action_is_reviewed_once_in_slack_and_the_agent_hears_the_verdict(
        services, stub, slack, make_agent, receivers, db_url):
    agent = make_agent(processes=("checked",))
    hook = receivers()
    stored = record(agent, 1, callback_url=hook.url, inputs={"ticket": "1", "email": "a@b.c <!channel>"},
                    decision="refunded <@U0DRI> *bold*")
    services.outbox.drain()
    [card] = cards(stub, "C0CHECKED")
    text = message_text(card)
    assert "QA review" in text and "Checked refunds" in text and "[redacted]" in text and "a@b.c" not in text
    assert "<@U0DRI>" not in json.dumps(card.blocks) and "<!channel>" not in json.dumps(card.blocks)
    assert buttons(card) == [qa_blocks.ACTION_QA_OK, qa_blocks.ACTION_QA_WRONG]

    click(slack, stub, "U0PM", qa_blocks.ACTION_QA_WRONG, card)  # not a reviewer: told who is, no modal
    assert "Only <@U0ESCOWNER>, <!subteam^S0REFUNDERS> can" in wait_for(lambda: ephemerals_to(stub, "U0PM"))[0]

    click(slack, stub, "U0REFUNDER1", qa_blocks.ACTION_QA_WRONG, card)  # a group member may review
    view = wait_for(lambda: stub.calls_to("views.open"), what="the Wrong modal")[0].args["view"]
    assert view["callback_id"] == qa_blocks.QA_WRONG_MODAL
    note = {qa_blocks.NOTE_BLOCK: {qa_blocks.NOTE_INPUT: {"type": "plain_text_input", "value": "  "}}}
    blank = slack.interaction(view_submission("U0REFUNDER1", view["callback_id"], view["private_metadata"], note))
    assert blank.json()["response_action"] == "errors"
    note[qa_blocks.NOTE_BLOCK][qa_blocks.NOTE_INPUT]["value"] = "Ticket 1 was already refunded by hand"
    resp = slack.interaction(view_submission("U0REFUNDER1", view["callback_id"], view["private_metadata"], note))
    assert resp.status_code == 200 and "errors" not in resp.text

    def reviewed():
        with services.db.transaction() as s:
            return s.scalar(select(QaReview.status).where(QaReview.entry_seq == stored["seq"])) != "pending"
    wait_for(reviewed, what="the review")

    click(slack, stub, "U0ESCOWNER", qa_blocks.ACTION_QA_OK, card)  # second click: told who reviewed
    told = wait_for(lambda: ephemerals_to(stub, "U0ESCOWNER"), what="the second reviewer's reply")[0]
    assert "Already reviewed by <@U0REFUNDER1>" in told and "*Wrong*" in told

    services.outbox.drain()
    [card] = cards(stub, "C0CHECKED")
    text = message_text(card)
    assert "Wrong" in text and "Ticket 1 was already refunded by hand" in text and buttons(card) == []

    with services.db.transaction() as s:
        entries = [json.loads(b) for b in s.scalars(select(ChangelogEntry.body).where(
            ChangelogEntry.process_id == "checked").order_by(ChangelogEntry.seq))]
    assert [e["decision"] for e in entries] == ["refunded <@U0DRI> *bold*", "qa_wrong"]
    review = entries[1]
    assert review["kind"] == "qa" and review["human_escalation"] is True and review["decided_by"] == "U0REFUNDER1"
    assert (review["reviewed_seq"], review["reviewed_hash"]) == (stored["seq"], stored["hash"])
    assert review["reason"] == "Ticket 1 was already refunded by hand" and review["model"] == "vendor:model-a"
    assert "callback_url" not in entries[0]  # where the verdict goes is not part of the log

    services.callbacks.drain()
    [(body, ts, sig)] = hook.received
    assert verify(agent.callback_secret, body, ts, sig)
    verdict = json.loads(body)
    assert verdict["event"] == "qa_review" and verdict["verdict"] == "wrong" and verdict["decision"] == "qa_wrong"
    assert verdict["entry"]["seq"] == stored["seq"] and verdict["entry"]["hash"] == stored["hash"]
    assert verdict["note"] == "Ticket 1 was already refunded by hand" and verdict["reviewed_by"] == "U0REFUNDER1"
    assert verdict["review"]["seq"] == review["seq"]
    QaVerdict.model_validate(verdict)  # what /openapi.json documents as the qa_review webhook

    verified = aopbot("changelog", "verify", env={"DATABASE_URL": db_url})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert stub.violations == []


def test_a_callback_url_on_a_record_is_checked_like_an_escalations(make_agent):
    agent = make_agent(processes=("checked",))
    spec = agent.http.get("/openapi.json").json()
    field = spec["components"]["schemas"]["ChangelogRecord"]["properties"]["callback_url"]
    assert field["format"] == "uri" and "QA reviewer's verdict" in field["description"]
    assert "qa_review" in spec["webhooks"]
    for url, says in (("http://example.com/hook", "must be https://"), ("https://u:p@example.com/", "credentials"),
                      ("https://10.0.0.1/hook", "non-public"), ("ftp://example.com/", "string should match")):
        resp = agent.http.post("/api/v1/changelog", json={"process_id": "checked", "model": "m", "decision": "d",
                                                          "callback_url": url})
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "callback_url", resp.text
        assert says in resp.text.lower(), resp.text
    assert agent.http.get("/api/v1/changelog", params={"process_id": "checked"}).text == ""


def action(i: int, process_id: str = "sampled") -> dict:
    """The i-th of a run of distinct agent actions, each with its own timestamp."""
    at = clock.parse_iso("2026-11-02T08:00:00Z") + timedelta(seconds=7 * i)
    return {"process_id": process_id, "model": "vendor:model-a", "decision": f"refunded ticket {i}",
            "timestamp": clock.iso(at), "inputs": {"ticket": str(i), "amount": i % 500},
            "tools_invoked": ["billing.refund"], "policy_checks": ["refund_limit_500"]}


def sampled_decisions(db) -> set[str]:
    with db.transaction() as s:
        q = (select(ChangelogEntry.decision).join(QaReview, (QaReview.process_id == ChangelogEntry.process_id)
                                                  & (QaReview.entry_seq == ChangelogEntry.seq)))
        return set(s.scalars(q))


def test_2000_actions_at_5_percent_post_70_to_130_cards_and_a_replay_samples_the_same_ones(
        services, stub, make_agent, sqlite_template, tmp_path):
    """Acceptance 1: 2,000 actions recorded on a tier-2 process with qa.sample_rate 0.05 post a
    binomially plausible number of review cards (89 with the tests' key); replayed in reverse order
    into a fresh database (other seqs, other chain hashes), the same actions are sampled; and the
    operator recomputes every choice from the log and the key."""
    agent = make_agent(processes=("sampled",))
    actions = [action(i) for i in range(2000)]
    for body in actions[:40]:  # the first over HTTP, the rest through the same domain call with the same token
        assert agent.http.post("/api/v1/changelog", json=body).status_code == 201
    with services.db.transaction() as s:
        token = s.get(AgentToken, agent.token_id)
        s.expunge(token)
    key = services.settings.qa_key
    for body in actions[40:]:
        records.record_action(services.db, services.registry, token, ChangelogRecord(**body), qa_key=key)
    services.outbox.drain()
    posted = cards(stub, "C0SAMPLED")
    assert 70 <= len(posted) <= 130, len(posted)
    first = sampled_decisions(services.db)
    assert len(first) == len(posted) and {f"refunded ticket {i}" for i in range(40)} & first  # HTTP ones too
    assert {message_text(m).split("What the agent did*\n")[1].split("\n")[0] for m in posted} == first

    with services.db.transaction() as s:  # the operator's audit: the log and the key say what was sampled
        recomputed = {e["decision"] for e in changelog.iter_all(s, "sampled") if qa.is_sampled(key, e, 0.05)}
    assert recomputed == first

    # A fresh (SQLite) database, whichever backend the first run used: the sample depends on neither.
    shutil.copy(sqlite_template, tmp_path / "replay.db")
    fresh = Database(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        with fresh.transaction() as s:
            new = tokens.create(s, ["sampled"], "replayed-agent")
            replay_token = s.get(AgentToken, new.id)
            s.expunge(replay_token)
        for body in reversed(actions):  # other seqs, other chain hashes: the same sample
            records.record_action(fresh, services.registry, replay_token, ChangelogRecord(**body), qa_key=key)
        assert sampled_decisions(fresh) == first
    finally:
        fresh.dispose()


EXPECTED = "8.0% (95% CI 4.1–15.0%; 8 wrong of 100 reviewed)"


def test_8_wrong_of_100_reviews_is_an_8_percent_error_rate_in_stats_the_digest_and_metrics(
        services, stub, slack, make_agent, server, db_url):
    """Acceptance 2: 100 sampled actions reviewed through signed Slack requests, 8 of them Wrong."""
    agent = make_agent(processes=("checked",))
    for i in range(100):
        record(agent, i)
    services.outbox.drain()
    posted = cards(stub, "C0CHECKED")
    assert len(posted) == 100
    for n, card in enumerate(posted[:8], 1):
        click(slack, stub, "U0ESCOWNER", qa_blocks.ACTION_QA_WRONG, card)
        opened = wait_for(lambda n=n: len(stub.calls_to("views.open")) == n and stub.calls_to("views.open"),
                          what="the Wrong modal")
        view = opened[-1].args["view"]
        note = {qa_blocks.NOTE_BLOCK: {qa_blocks.NOTE_INPUT: {"type": "plain_text_input", "value": f"wrong #{n}"}}}
        resp = slack.interaction(view_submission("U0ESCOWNER", view["callback_id"], view["private_metadata"], note))
        assert resp.status_code == 200 and "errors" not in resp.text
    for card in posted[8:]:
        click(slack, stub, "U0ESCOWNER", qa_blocks.ACTION_QA_OK, card)

    def pending() -> int:
        with services.db.transaction() as s:
            return s.scalar(select(func.count()).select_from(QaReview).where(QaReview.status == "pending"))
    wait_for(lambda: pending() == 0, timeout=60, what="100 reviews")

    click(slack, stub, "U0REFUNDER1", qa_blocks.ACTION_QA_OK, posted[0])  # a second click on a reviewed card
    told = wait_for(lambda: ephemerals_to(stub, "U0REFUNDER1"), what="the reply")[0]
    assert "Already reviewed by <@U0ESCOWNER>" in told and "*Wrong*" in told

    stats = message_text(slack.ask("U0ESCOWNER", "stats checked"))
    assert f"QA error rate: *{EXPECTED}* :warning: above qa.max_error_rate 3.0%" in stats, stats

    with services.db.transaction() as s:
        now = clock.now()
        built = digest.build_digest(s, services.registry, now - timedelta(days=1), now, "UTC", now)
    built = digest.Digest.from_payload(built.to_payload())  # as the outbox carries it
    line = f"Checked refunds (checked): error rate {EXPECTED} ABOVE qa.max_error_rate 3.0%"
    assert line in digest_blocks.digest_text(built)
    posted_text = message_text(digest_blocks.digest_message(built))
    assert f"*Checked refunds*: error rate {EXPECTED} :warning: *above qa.max_error_rate 3.0%*" in posted_text

    families = list(text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text))
    assert metric(families, "aopbot_qa_error_rate", process="checked") == pytest.approx(0.08)
    assert metric(families, "aopbot_qa_error_rate_lower", process="checked") == pytest.approx(0.0411, abs=5e-5)
    assert metric(families, "aopbot_qa_error_rate_upper", process="checked") == pytest.approx(0.1500, abs=5e-5)
    assert metric(families, "aopbot_qa_sample_size", process="checked") == 100
    assert metric(families, "aopbot_qa_reviews", process="checked", verdict="wrong") == 8
    assert metric(families, "aopbot_qa_pending", process="checked") == 0

    with services.db.transaction() as s:
        decisions = list(s.scalars(select(ChangelogEntry.decision).where(ChangelogEntry.process_id == "checked")))
    assert decisions.count("qa_wrong") == 8 and decisions.count("qa_ok") == 92 and len(decisions) == 200
    verified = aopbot("changelog", "verify", env={"DATABASE_URL": db_url})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert stub.violations == []


def test_a_card_unreviewed_past_the_tiers_target_is_overdue_in_the_digest_stats_and_metrics(
        services, stub, slack, make_agent, server):
    agent = make_agent(processes=("checked",))
    record(agent, 1)
    record(agent, 2)
    services.outbox.drain()
    click(slack, stub, "U0ESCOWNER", qa_blocks.ACTION_QA_OK, cards(stub, "C0CHECKED")[0])
    wait_for(lambda: sampled_status(services.db) == ["ok", "pending"], what="the first review")

    def digest_text(minutes: int) -> str:
        now = clock.now() + timedelta(minutes=minutes)
        with services.db.transaction() as s:
            return digest_blocks.digest_text(digest.build_digest(s, services.registry, now - timedelta(days=1), now,
                                                                 "UTC", now))
    assert "1 waiting for review" in digest_text(29) and "overdue" not in digest_text(29).split("Sampling QA")[1]
    late = digest_text(31)  # tier 2: a review is due within 30 minutes
    assert "Checked refunds (checked): error rate 0.0% (95% CI 0.0–79.3%; 0 wrong of 1 reviewed) · " \
           "1 waiting for review, 1 overdue, oldest 31m" in late, late
    assert "1 waiting for review" in message_text(slack.ask("U0ESCOWNER", "stats checked"))


def sampled_status(db) -> list[str]:
    with db.transaction() as s:
        return list(s.scalars(select(QaReview.status).order_by(QaReview.entry_seq)))


def test_a_verdict_acked_before_a_crash_is_applied_by_the_next_tick(services, make_agent):
    """The click was written to the inbox and Slack was told "received", then the process died: the
    next tick (any replica) applies it, once."""
    from freezegun import freeze_time

    from bot.domain import inbox

    agent = make_agent(processes=("checked",))
    stored = record(agent, 1)
    with services.db.transaction() as s:
        review_id = s.scalar(select(QaReview.id))
    inbox.accept(services.db, "qa_wrong", "U0ESCOWNER", review_id, "refunded the wrong ticket")
    assert sampled_status(services.db) == ["pending"]
    with freeze_time(clock.now() + timedelta(seconds=11)):
        assert inbox.replay(services.db) == 1
        assert inbox.replay(services.db) == 0
    assert sampled_status(services.db) == ["wrong"]
    with services.db.transaction() as s:
        entries = [json.loads(b) for b in s.scalars(select(ChangelogEntry.body).order_by(ChangelogEntry.seq))]
    assert [(e["decision"], e.get("reviewed_seq"), e.get("reason")) for e in entries] == [
        ("refunded ticket 1", None, None), ("qa_wrong", stored["seq"], "refunded the wrong ticket")]


def test_a_backlog_of_review_cards_never_holds_up_a_page_in_the_same_channel(services, stub, make_agent):
    agent = make_agent(processes=("checked",))
    for i in range(30):
        record(agent, i)
    esc_id = agent.signal(process_id="checked").json()["id"]
    services.outbox.run_once()  # one delivery pass: the page goes out with the first cards, not after all 30
    assert any(esc_id in json.dumps(m.blocks) for m in stub.channel_messages("C0CHECKED"))
    assert 1 <= len(cards(stub, "C0CHECKED")) < 30
    services.outbox.drain()
    assert len(cards(stub, "C0CHECKED")) == 30


def test_the_agent_never_reviews_its_own_action_even_as_a_listed_reviewer(services, stub, slack, make_agent):
    agent = make_agent(processes=("checked",), agent_user="U0REFUNDER1")  # in S0REFUNDERS, a reviewer group
    record(agent, 1)
    services.outbox.drain()
    click(slack, stub, "U0REFUNDER1", qa_blocks.ACTION_QA_OK, cards(stub, "C0CHECKED")[0])
    assert "can't review" in wait_for(lambda: ephemerals_to(stub, "U0REFUNDER1"), what="the refusal")[0]
    assert sampled_status(services.db) == ["pending"]


def test_a_hostile_record_makes_a_card_inside_block_kit_limits(services, stub, make_agent):
    agent = make_agent(processes=("checked",))
    record(agent, 1, decision="<!here> " + "x" * 190, inputs={f"k{i} <@U0DRI>": "v" * 3000 for i in range(300)},
           policy_checks=["*check* <!channel> " + "c" * 500] * 200, trace_id="\u202e<!everyone>" * 15)
    services.outbox.drain()
    [card] = cards(stub, "C0CHECKED")
    raw = json.dumps(card.blocks)
    assert "<!here>" not in raw and "<!channel>" not in raw and "<@U0DRI>" not in raw and "<!everyone>" not in raw
    assert stub.violations == []
