"""Registry people (user IDs, user groups, emails) as Slack user IDs, and as names that do not notify
them, looked up once and cached.

A person Slack cannot resolve (no such email, no such group) is None: a hygiene problem the digest
names, not an error; a passing Slack failure is raised as RetryLater for the delivery to retry.
"""

from __future__ import annotations

import threading
import time

from bot.delivery.outbox import PermanentFailure
from bot.delivery.slack_client import SlackClient
from bot.domain.registry import is_user_id


class Directory:
    """People in the registry (user IDs, user groups, emails) → Slack user IDs, cached."""

    TTL_S = 600

    def __init__(self, client: SlackClient):
        self.client = client
        self._cache: dict[str, tuple[float, list[str] | None]] = {}
        self._names: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, person: str) -> list[str] | None:
        """User IDs for one person; None if Slack cannot resolve it (a hygiene problem)."""
        if is_user_id(person):
            return [person]
        with self._lock:
            hit = self._cache.get(person)
        if hit and time.monotonic() - hit[0] < self.TTL_S:
            return hit[1]
        result: list[str] | None
        try:
            if "@" in person:
                result = [self.client.deliver("users_lookupByEmail", email=person)["user"]["id"]]
            else:
                result = list(self.client.deliver("usergroups_users_list", usergroup=person).get("users", []))
        except PermanentFailure:  # users_not_found, no_such_subteam, …: Slack knows no such person
            result = None
        with self._lock:
            self._cache[person] = (time.monotonic(), result)
        return result

    def name_of(self, person: str) -> str | None:
        """How to name a person in a message without notifying them: a user's display name, a group's
        @handle, an email as is; None when Slack cannot say (looked up once, cached)."""
        if "@" in person:
            return person
        with self._lock:
            hit = self._names.get(person)
        if hit and time.monotonic() - hit[0] < self.TTL_S:
            return hit[1]
        name: str | None = None
        try:
            if is_user_id(person):
                user = self.client.deliver("users_info", user=person)["user"]
                profile = user.get("profile") or {}
                name = profile.get("display_name") or user.get("real_name") or user.get("name")
            else:
                for g in self.client.deliver("usergroups_list").get("usergroups", []):
                    with self._lock:
                        self._names[g["id"]] = (time.monotonic(), "@" + g["handle"] if g.get("handle") else None)
                name = self._names.get(person, (0.0, None))[1]
        except PermanentFailure:
            name = None
        with self._lock:
            self._names[person] = (time.monotonic(), name)
        return name

    def names_of(self, people: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in people:
            if p not in out and (name := self.name_of(p)):
                out[p] = name
        return out

    def resolve_all(self, people: list[str], unresolved: list[str]) -> list[str]:
        out: list[str] = []
        for p in people:
            ids = self.resolve(p)
            if ids is None:
                if p not in unresolved:
                    unresolved.append(p)
                continue
            out += [u for u in ids if u not in out]
        return out
