"""Registry people (user IDs, user groups, emails) as Slack user IDs, looked up once and cached.

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
