"""What a Slack workspace holds, as plain records: calls made, messages, people, channels, modals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.sandbox import limits

BOT_USER = "UBOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    ok: bool = True
    error: str | None = None
    status: int = 200
    to: str | None = None  # a response_url POST: the key of the URL it went to


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    user: str = BOT_USER
    history: list[dict[str, Any]] = field(default_factory=list)
    ephemeral_to: str | None = None  # shown to this person only
    metadata: dict[str, Any] | None = None  # Slack message metadata (event_type, event_payload)


@dataclass
class User:
    id: str
    name: str
    email: str | None = None
    deleted: bool = False
    is_bot: bool = False


@dataclass
class Channel:
    id: str
    name: str
    members: set[str] = field(default_factory=set)


@dataclass
class Modal:
    id: str
    user: str
    view: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)


def dm_channel(user: str) -> str:
    """The id of the bot's DM with a person (Slack's D… ids; ours derive from the user id)."""
    return "D" + user[1:]


def message_text(msg: Message | dict[str, Any]) -> str:
    """All the text a person sees in a message (top-level text excluded), joined."""
    blocks = msg.blocks if isinstance(msg, Message) else msg.get("blocks", [])
    return "\n".join(limits.texts(blocks))


def buttons(msg: Message) -> list[str]:
    return [e["action_id"] for b in msg.blocks if b.get("type") == "actions" for e in b.get("elements", [])]
