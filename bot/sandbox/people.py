"""The sandbox's people and channels, made from the registry: who is who, and in which role.

A registry names people as user ids, user groups or emails. The sandbox gives each a Slack user (a
group gets one member, an email its own user) so every role can be played: the escalation owner,
an approver, a compliance approver, the accountable owner, a stranger and the agent itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.domain.registry import Process
from bot.sandbox.workspace import SlackWorkspace

STRANGER = "U0STRANGER"
AGENT_USER = "U0AGENT"


@dataclass
class Person:
    id: str
    name: str
    roles: list[str] = field(default_factory=list)


def _handle(some_id: str) -> str:
    """U0ESCOWNER -> escowner: a readable name for an id the registry gives without one."""
    return re.sub(r"^[A-Z]0?", "", some_id).lower() or some_id.lower()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "channel"


class Cast:
    """Everyone the sandbox knows, with their roles, in the order the picker shows them."""

    def __init__(self) -> None:
        self.people: dict[str, Person] = {}
        self.groups: dict[str, tuple[str, list[str]]] = {}  # S… -> (handle, member ids)
        self.emails: dict[str, str] = {}

    def _user(self, user_id: str, name: str) -> Person:
        return self.people.setdefault(user_id, Person(user_id, name))

    def users_for(self, who: str) -> list[Person]:
        if "@" in who:
            local = who.split("@", 1)[0]
            uid = "U0" + re.sub(r"[^A-Z0-9]", "", local.upper())[:20]
            self.emails[who] = uid
            return [self._user(uid, local)]
        if who[:1] == "S":
            handle = _handle(who)
            member = self._user(f"U0{re.sub(r'[^A-Z0-9]', '', handle.upper())}1", f"{handle}-member")
            self.groups.setdefault(who, (handle, [member.id]))
            return [member]
        return [self._user(who, _handle(who))]

    def give(self, who: str | None, role: str, process: Process) -> None:
        if not who:
            return
        for person in self.users_for(who):
            via = f" (via @{self.groups[who][0]})" if who[:1] == "S" else ""
            label = f"{role}{via}: {process.name}"
            if label not in person.roles:
                person.roles.append(label)


def cast_of(processes: list[Process]) -> Cast:
    cast = Cast()
    for p in processes:
        cast.give(p.raci.escalation, "escalation owner", p)
        for who in p.approvals.approvers:
            cast.give(who, "approver", p)
        for who in p.approvals.compliance:
            cast.give(who, "compliance approver", p)
        cast.give(p.raci.accountable, "accountable owner", p)
        for i, level in enumerate(p.escalation_policy[1:], start=2):
            for who in level.notify:
                cast.give(who, f"paged at level {i}", p)
        for role in ("responsible", "consulted", "informed"):
            for who in getattr(p.raci, role):
                cast.give(who, role, p)
    cast._user(STRANGER, "stranger")
    cast._user(AGENT_USER, "demo-agent").roles.append("the agent's own Slack identity (may never decide)")
    return cast


def populate(ws: SlackWorkspace, processes: list[Process], digest_channel: str | None = None) -> Cast:
    """Fill a workspace with the registry's people, groups and channels (the bot invited to each)."""
    cast = cast_of(processes)
    emails = {uid: email for email, uid in cast.emails.items()}
    for person in cast.people.values():
        ws.add_user(person.id, person.name, email=emails.get(person.id))
    for group_id, (handle, members) in cast.groups.items():
        ws.add_group(group_id, handle, members)
    for p in processes:
        if p.channel not in ws.channels:
            ws.add_channel(p.channel, _slug(p.name))
    if digest_channel and digest_channel not in ws.channels:
        ws.add_channel(digest_channel, "aop-digest")
    return cast
