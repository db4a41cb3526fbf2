"""/aop through signed slash-command requests: what the person sees."""

from __future__ import annotations

from tests.slack_stub.server import message_text


def test_help_lists_every_command(slack):
    resp = slack.command("U0ESCOWNER", "help")
    assert resp.status_code == 200
    body = resp.json()
    assert body["response_type"] == "ephemeral"
    assert "/aop help" in message_text(body)


def test_unknown_subcommand_answers_with_did_you_mean_and_help(slack):
    body = slack.command("U0ESCOWNER", "hlep").json()
    text = message_text(body)
    assert "Did you mean `/aop help`?" in text and "/aop help" in text


def test_hostile_subcommand_is_escaped(slack):
    text = message_text(slack.command("U0ESCOWNER", "<!channel>").json())
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
