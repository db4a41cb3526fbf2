"""/aop subcommands as a registry of (name, usage, summary, function); help is generated from it.

Pure domain: returns message bodies (text + blocks); the Slack handler only acks them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot import blocks


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Any, str, list[str]], dict[str, Any]]
    min_args: int = 0


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, summary: str, min_args: int = 0):
    def wrap(fn):
        COMMANDS[name] = Command(name, usage, summary, fn, min_args)
        return fn
    return wrap


def _reply(text: str) -> dict[str, Any]:
    return {"text": blocks.clip(text, blocks.FALLBACK_TEXT),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": blocks.clip(text, blocks.SECTION_TEXT)}}]}


def help_text() -> str:
    lines = ["*aopbot* — who owns which agent process, and what is waiting on whom.", ""]
    lines += [f"• `/aop {c.usage}` — {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines)


@command("help", "help", "this list")
def _help(svc, user: str, args: list[str]) -> dict[str, Any]:
    return _reply(help_text())


def did_you_mean(word: str, options: list[str]) -> str | None:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None


def run(svc, user: str, text: str) -> dict[str, Any]:
    words = text.split()
    if not words:
        return _reply(help_text())
    name, args = words[0].lower(), words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        guess = did_you_mean(name, list(COMMANDS))
        hint = f"Did you mean `/aop {guess}`?\n\n" if guess else ""
        return _reply(f"I don't know `{blocks.safe(name, 50)}`. {hint}{help_text()}")
    if len(args) < cmd.min_args:
        return _reply(f"Usage: `/aop {cmd.usage}`")
    return cmd.run(svc, user, args)
