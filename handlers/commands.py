"""/aop: one entry point; subcommands come from bot.commands' registry (help is generated from it)."""

from __future__ import annotations

from bot import commands as aop_commands
from handlers.common import services


def on_aop(ack, command, respond, context):
    svc = services(context)
    reply = aop_commands.run(svc, command.get("user_id", ""), command.get("text", ""))
    ack(response_type="ephemeral", **reply)
    _ = respond
