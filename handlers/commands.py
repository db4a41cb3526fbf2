"""/aop: the answer in the ack when it is ready within a few hundred ms, else through response_url."""

from __future__ import annotations

from bot.surfaces import commands as aop_commands
from handlers.common import answer_within_budget, services


def on_aop(ack, command, respond, context):
    svc = services(context)
    user, text = command.get("user_id", ""), command.get("text", "")
    answer_within_budget(ack, respond, lambda: aop_commands.run(svc, user, text))
