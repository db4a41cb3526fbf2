"""The Slack rules the sandbox's Web API holds the bot to (the tests' stand-in is the same code)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from bot.sandbox.records import BOT_USER, Message
from bot.sandbox.workspace import SlackWorkspace

TOKEN = "Bearer xoxb-right"  # noqa: S105 - test value


@pytest.fixture
def ws() -> SlackWorkspace:
    return SlackWorkspace(bot_token="xoxb-right", auto_join=False)  # noqa: S106 - test value


def call(ws: SlackWorkspace, method: str, auth: str = TOKEN, **args) -> dict:
    status, _, body = ws.answer(method, args, auth)
    assert status == 200
    return body


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str = "Approve", value: str = "v") -> dict:
    return {"type": "actions", "elements": [{"type": "button", "action_id": "a", "value": value,
                                             "text": {"type": "plain_text", "text": text}}]}


def test_only_the_bots_own_token_is_accepted(ws):
    assert call(ws, "auth.test", auth="")["error"] == "not_authed"
    assert call(ws, "auth.test", auth="Bearer xoxb-wrong")["error"] == "invalid_auth"
    assert call(ws, "auth.test", auth="Bearer xapp-1")["error"] == "invalid_auth"
    assert call(ws, "auth.test")["ok"]


@pytest.mark.parametrize("blocks, problem", [
    ([section("x")] * 51, "51 blocks > 50"),
    ([section("x" * 3001)], "section text 3001 > 3000"),
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "header > 150"),
    ([button(text="b" * 76)], "button text > 75"),
    ([button(value="v" * 2001)], "button value > 2000"),
    ([section("Ping <!channel>")], "mass mention"),
    ([section("<script>")], "unescaped < or >"),
])
def test_block_kit_limits_are_refused_as_slack_refuses_them(ws, blocks, problem):
    ws.add_channel("C1", "one")
    body = call(ws, "chat.postMessage", channel="C1", blocks=blocks, text="t")
    assert body["error"] == "invalid_blocks" and any(problem in p for p in body["errors"])
    assert ws.channel_messages("C1") == []


def test_the_bot_posts_only_where_it_was_invited(ws):
    ws.add_channel("C1", "one", bot_member=False)
    assert call(ws, "chat.postMessage", channel="C1", text="hi")["error"] == "not_in_channel"
    assert call(ws, "chat.postMessage", channel="C9", text="hi")["error"] == "channel_not_found"
    ws.channels["C1"].members.add(BOT_USER)
    assert call(ws, "chat.postMessage", channel="C1", text="hi")["ok"]


def test_chat_update_only_on_the_bots_own_messages(ws):
    ws.add_channel("C1", "one")
    mine = call(ws, "chat.postMessage", channel="C1", text="mine")
    assert call(ws, "chat.update", channel="C1", ts=mine["ts"], text="edited")["ok"]
    ws.messages[("C1", "1.000001")] = Message("C1", "1.000001", "a person's", [], user="U0PERSON")
    assert call(ws, "chat.update", channel="C1", ts="1.000001", text="x")["error"] == "cant_update_message"
    assert call(ws, "chat.update", channel="C1", ts="2.000002", text="x")["error"] == "message_not_found"
    assert ws.message("C1", mine["ts"]).text == "edited"


def test_a_trigger_id_opens_one_modal_within_three_seconds(ws):
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Reject"}, "blocks": []}
    with freeze_time("2026-11-28 10:00:00") as frozen:
        late = ws.issue_trigger("U1")
        fresh = ws.issue_trigger("U1")
        assert call(ws, "views.open", trigger_id=fresh, view=view)["ok"]
        assert call(ws, "views.open", trigger_id=fresh, view=view)["error"] == "invalid_trigger_id"  # used once
        frozen.tick(timedelta(seconds=3.5))
        assert call(ws, "views.open", trigger_id=late, view=view)["error"] == "expired_trigger_id"
    assert call(ws, "views.open", trigger_id="1.2.3", view=view)["error"] == "invalid_trigger_id"
    assert [m.user for m in ws.modals.values()] == ["U1"]


def test_struggling_answers_429_with_retry_after_and_some_500s():
    ws = SlackWorkspace(seed=7)
    ws.struggling = True
    answers = [ws.answer("auth.test", {}, "Bearer xoxb-any") for _ in range(400)]
    limited = [h for s, h, _ in answers if s == 429]
    assert len(limited) > 50 and all(h["Retry-After"] == "1" for h in limited)
    assert 5 < sum(1 for s, _, _ in answers if s == 500) < len(limited)
    assert sum(1 for s, _, _ in answers if s == 200) > 200
