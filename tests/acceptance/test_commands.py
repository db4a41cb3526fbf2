"""Acceptance (issue 4, point 1): each /aop command through a signed slash-command request, asserting
what the person sees, including each error reply."""

from __future__ import annotations

import time

import pytest

from bot.domain import escalations
from bot.sandbox.records import message_text
from handlers.common import COMMAND_BUDGET_S, WORKING_ON_IT
from tests.conftest import wait_for
from tests.helpers import database_held, end_sessions_waiting, open_escalation


def ask(slack, text: str, user: str = "U0ESCOWNER") -> str:
    body = slack.ask(user, text)
    assert body["response_type"] == "ephemeral"
    return message_text(body)


def test_help_lists_every_command(slack):
    text = ask(slack, "help")
    for usage in ("help", "who <process>", "list [tier N]", "mine", "pending [process]", "log <process> [N]",
                  "stats <process> [days]", "pause <process> <reason>", "resume <process>"):
        assert f"/aop {usage}" in text
    assert ask(slack, "") == text  # a bare /aop is help too


def test_unknown_subcommand_answers_with_did_you_mean_and_help(slack):
    text = ask(slack, "hlep")
    assert "Did you mean `/aop help`?" in text and "/aop who <process>" in text
    assert "Did you mean" not in ask(slack, "xyzzy") and "/aop help" in ask(slack, "xyzzy")


def test_missing_argument_gets_the_usage_line(slack):
    assert ask(slack, "who") == "Usage: `/aop who <process>`"
    assert ask(slack, "pause refunds") == "Usage: `/aop pause <process> <reason> [--cancel-open]`"
    assert ask(slack, "log") == "Usage: `/aop log <process> [N]`"


def test_hostile_input_is_escaped(slack):
    text = ask(slack, "<!channel>")
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<@U0EVIL>" not in ask(slack, "who <@U0EVIL>")


def test_who_shows_raci_and_escalation_owner(services, slack):
    open_escalation(services)
    text = ask(slack, "who refunds")
    assert "*Support refunds* (`refunds`) · tier 2 · <#C0REFUNDS> · active" in text
    assert "*Escalation owner (E):* <@U0ESCOWNER>" in text
    assert "*Accountable (A):* <@U0DRI>" in text
    assert "*Responsible (R):* designer@company.com" in text
    assert "*Consulted (C):* <!subteam^S0SECURITY>" in text
    assert "*Informed (I):* <@U0PM>" in text
    assert "*Open escalations:* 1" in text


def test_who_with_a_misspelled_process_guesses(slack):
    assert ask(slack, "who refnds") == "No process `refnds`. Did you mean `refunds`?"
    assert "`/aop list` shows them all" in ask(slack, "who zzzzzz")


def test_list_and_list_by_tier(slack):
    text = ask(slack, "list")
    assert "*7 process(es)*" in text and "`refunds` — Support refunds (tier 2, E: <@U0ESCOWNER>)" in text
    tier4 = ask(slack, "list tier 4")
    assert "`kyc`" in tier4 and "`refunds`" not in tier4
    assert ask(slack, "list tier 9") == "Usage: `/aop list [tier N]` with N from 0 to 4"


def test_pending_lists_age_tier_link_and_who_is_paged(services, slack):
    from freezegun import freeze_time

    with freeze_time("2026-11-25 10:00:00"):
        open_escalation(services)
        open_escalation(services, process_id="summaries", action={"summary": "Summarise standup"})
        services.outbox.drain()
    text = ask(slack, "pending")
    assert "*2 open escalation(s)*" in text
    assert "<https://sandbox.slack.invalid/archives/C0REFUNDS/p" in text  # a link to the thread's parent
    assert "*Support refunds*, tier 2, waiting" in text and "paged: <@U0ESCOWNER>" in text
    only = ask(slack, "pending refunds")
    assert "*1 open escalation(s) in `refunds`*" in only and "Summarise standup" not in only
    assert "Did you mean `refunds`" in ask(slack, "pending refund")
    assert "Nothing is waiting" in ask(slack, "pending kyc")


def test_mine_shows_roles_and_what_waits_on_me(services, slack):
    esc_id = open_escalation(services)
    services.outbox.drain()
    text = ask(slack, "mine", user="U0REFUNDER1")  # an approver through the S0REFUNDERS group
    assert "*Waiting on you (1)*" in text and "Refund $120 on ticket 123" in text
    assert "`refunds` — Support refunds: approver" in text
    owner = ask(slack, "mine", user="U0ESCOWNER")
    assert "`refunds` — Support refunds: escalation, approver" in owner
    escalations.decide(services.db, esc_id, "U0ESCOWNER", "approve")
    assert "*Waiting on you (0)*" in ask(slack, "mine", user="U0REFUNDER1")
    assert "You hold no role in any process." in ask(slack, "mine", user="U0NOBODY")


def test_log_shows_the_last_entries(services, slack):
    esc_id = open_escalation(services)
    services.outbox.drain()
    escalations.decide(services.db, esc_id, "U0ESCOWNER", "reject", "no")
    text = ask(slack, "log refunds")
    assert "*Last 1 change-log entries of Support refunds*" in text
    assert "escalation · *rejected* by <@U0ESCOWNER> — Refund $120 on ticket 123" in text
    assert ask(slack, "log refunds 0") == "Usage: `/aop log <process> [N]` (a number from 1 to 50)"
    assert "No change-log entries" in ask(slack, "log kyc")


def test_a_slow_answer_comes_through_response_url(services, stub, slack):
    """Slack's own API is slow (resolving a user group takes 2.5 s): the ack still comes at once and
    the answer follows through response_url."""
    def slow_groups(method, args):
        if method == "usergroups.users.list":
            time.sleep(2.5)
        return None

    stub.fail = slow_groups
    url = stub.response_url("C0REFUNDS", "U0REFUNDER1")
    resp = slack.command("U0REFUNDER1", "mine", response_url=url)
    assert resp.json()["text"] == WORKING_ON_IT  # the ack did not wait for the answer
    assert not stub.responses_to(url)
    later = wait_for(lambda: stub.responses_to(url), what="the answer through response_url")
    assert "approver" in message_text(later[0])


def test_an_answer_slower_than_the_budget_comes_through_response_url(services, stub, slack, db):
    """The database is slow (the test holds what `/aop pending` reads): Slack gets its ack within the
    command budget, a short "Working on it…", and the answer follows through response_url as soon as
    it can be read, shown to the person who asked."""
    open_escalation(services)
    services.outbox.drain()
    url = stub.response_url("C0REFUNDS", "U0ESCOWNER")
    with database_held(db, "escalations"):
        started = time.monotonic()
        resp = slack.command("U0ESCOWNER", "pending", response_url=url)
        acked_after = time.monotonic() - started
        assert resp.status_code == 200 and resp.json() == {"response_type": "ephemeral", "text": WORKING_ON_IT}
        assert stub.responses_to(url) == []  # the answer is still waiting on the database
    assert acked_after < COMMAND_BUDGET_S + 1.0, acked_after  # at once, not at Slack's 3 s
    answer = wait_for(lambda: stub.responses_to(url), what="the answer through response_url")
    assert len(answer) == 1 and answer[0]["response_type"] == "ephemeral"
    assert "*1 open escalation(s)*" in message_text(answer[0])
    shown = [m for m in stub.messages.values() if m.ephemeral_to == "U0ESCOWNER"]
    assert [message_text(m) for m in shown] == [message_text(answer[0])]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # ends the bot's own database session
def test_an_answer_that_fails_after_the_ack_says_so_through_response_url(services, stub, slack, db):
    url = stub.response_url("C0REFUNDS", "U0ESCOWNER")
    with database_held(db, "escalations") as holder:
        assert slack.command("U0ESCOWNER", "pending", response_url=url).json()["text"] == WORKING_ON_IT
        wait_for(lambda: end_sessions_waiting(holder, "SELECT"), what="the answer waiting on the database")
    answer = wait_for(lambda: stub.responses_to(url), what="the apology through response_url")
    assert answer[0]["text"] == "Sorry, that failed; try again in a moment."


@pytest.mark.parametrize("user", ["U0STRANGER", "U0PM", "U0REFUNDER1"])
def test_only_owners_may_pause(services, slack, agent, user):
    text = ask(slack, "pause refunds looping on refunds", user=user)
    assert "Only the accountable or escalation owner of `refunds` (<@U0DRI>, <@U0ESCOWNER>) can pause it" in text
    assert agent.signal(process_id="refunds").status_code == 201  # nothing changed
    from bot.domain import processes

    with services.db.transaction() as s:
        assert processes.history(s, "refunds") == []


def test_pause_then_resume(services, stub, slack, agent):
    open_id = agent.signal(process_id="refunds").json()["id"]
    text = ask(slack, "pause refunds agent is refunding twice", user="U0DRI")
    assert "Paused `refunds`" in text
    refused = agent.signal(process_id="refunds")
    assert refused.status_code == 423 and "agent is refunding twice" in refused.json()["message"]
    proc = agent.http.get("/api/v1/processes/refunds").json()
    assert proc["status"] == "paused" and proc["paused_by"] == "U0DRI"
    assert proc["paused_reason"] == "agent is refunding twice" and proc["paused_at"].endswith("Z")
    assert "*paused* by <@U0DRI>" in ask(slack, "who refunds")
    # Open escalations stay decidable while paused.
    assert escalations.decide(services.db, open_id, "U0ESCOWNER", "approve").result == "decided"
    services.outbox.drain()
    notes = [m for m in stub.channel_messages("C0REFUNDS") if "is paused by <@U0DRI>" in message_text(m)]
    assert len(notes) == 1 and "agent is refunding twice" in message_text(notes[0])

    assert "Resumed `refunds`" in ask(slack, "resume refunds", user="U0ESCOWNER")
    assert agent.signal(process_id="refunds").status_code == 201
    assert agent.http.get("/api/v1/processes/refunds").json()["status"] == "active"
    from bot.domain import processes

    with services.db.transaction() as s:  # the audit trail: who, when, why
        trail = [(e.event, e.by, e.reason) for e in processes.history(s, "refunds")]
    assert trail == [("resumed", "U0ESCOWNER", None), ("paused", "U0DRI", "agent is refunding twice")]
    services.outbox.drain()
    assert any("is resumed by <@U0ESCOWNER>" in message_text(m) for m in stub.channel_messages("C0REFUNDS"))


def test_stats_shows_the_scorecard(services, slack):
    from freezegun import freeze_time

    with freeze_time("2026-11-25 10:00:00") as frozen:
        a = open_escalation(services)
        b = open_escalation(services, action={"summary": "Refund $9", "tools": ["billing.refund"]})
        services.outbox.drain()
        frozen.tick(600)
        escalations.decide(services.db, a, "U0ESCOWNER", "approve")
        frozen.tick(1200)
        escalations.decide(services.db, b, "U0ESCOWNER", "reject", "no")
    text = ask(slack, "stats refunds 30")
    assert "*Support refunds — last 30 day(s)*" in text
    assert "escalations: *2*" in text and "Approved 1 · rejected 1 · expired 0" in text
    assert "median *20m*, p90 *28m*" in text  # 10 and 30 minutes to decide
    assert ask(slack, "stats refunds lots") == "Usage: `/aop stats <process> [days]` (a number from 1 to 365)"


def test_a_long_pending_list_is_split_not_cut(services, slack):
    for i in range(17):
        open_escalation(services, action={"summary": f"Refund {i} " + "x" * 300, "tools": ["billing.refund"]})
    services.outbox.drain()
    body = slack.ask("U0ESCOWNER", "pending")
    sections = [b["text"]["text"] for b in body["blocks"]]
    assert len(sections) >= 3 and all(len(t) <= 3000 for t in sections)
    text = "\n".join(sections)
    import re

    whole_links = re.findall(r"<https://sandbox\.slack\.invalid/archives/[^|>]+\|[^<>]*…>", text)
    assert len(whole_links) == text.count("<https://") == 15  # every link complete
    assert "… and 2 more" in text
