"""The outbox handler that posts the daily digest (kind "digest"): the channel post, and one DM item
per owner with what is overdue on them. The digest was frozen into the payload when the day was
claimed; only the owner check (a Slack lookup) happens here, outside any database transaction."""

from __future__ import annotations

import logging
from typing import Any

from bot.delivery.directory import Directory
from bot.delivery.outbox import Outbox, PermanentFailure
from bot.delivery.slack_client import SlackClient
from bot.domain import changelog
from bot.ops import clock
from bot.surfaces import digest_blocks
from bot.surfaces.digest import OUTBOX_KIND, Digest, check_owners, item_from_dict

log = logging.getLogger("aopbot.digest")

HEADS_PER_MESSAGE = 40  # [process, seq, hash] triples per message: well inside Slack's metadata size


class DigestSender:
    def __init__(self, client: SlackClient, directory: Directory):
        self.client = client
        self.directory = directory

    def register(self, ob: Outbox) -> None:
        ob.register(OUTBOX_KIND, self.deliver)

    def _post_channel(self, item, payload: dict[str, Any]) -> None:
        """The digest, with each change-log chain's head in its metadata: the first HEADS_PER_MESSAGE
        on the digest itself, the rest in thread replies. Each post carries a key, so a retry after a
        crash finds what already went out instead of posting it twice."""
        digest = check_owners(Digest.from_payload(payload["digest"]), self.directory.resolve)
        channel, key = payload["channel"], f"digest:{digest.local_date.isoformat()}"
        chunks = [digest.heads[i:i + HEADS_PER_MESSAGE] for i in range(0, len(digest.heads), HEADS_PER_MESSAGE)]
        maybe_posted = item.attempts > 1

        def heads_payload(part: int) -> dict[str, Any]:
            return {"heads": chunks[part] if chunks else [], "part": part + 1, "parts": max(len(chunks), 1),
                    "local_date": digest.local_date.isoformat(), "at": clock.iso(digest.generated_at)}

        parent = self.client.post_once(key, maybe_posted, changelog.HEADS_EVENT, heads_payload(0), channel=channel,
                                       unfurl_links=False, unfurl_media=False, **digest_blocks.digest_message(digest))
        for part in range(1, len(chunks)):
            self.client.post_once(f"{key}:heads:{part + 1}", maybe_posted, changelog.HEADS_EVENT,
                                  heads_payload(part), channel=parent["channel"], thread_ts=parent["ts"],
                                  **digest_blocks.heads_reply(part + 1, len(chunks), len(chunks[part])))

    def deliver(self, item) -> None:
        payload = item.payload
        if payload["to"] == "channel":
            self._post_channel(item, payload)
            return
        owner = payload["owner"]
        users = self.directory.resolve(owner)
        if not users:
            # The channel digest names the owner under hygiene; nobody here to tell.
            raise PermanentFailure(f"digest owner {owner} cannot be resolved in Slack")
        items = [(d["process_name"], item_from_dict(d)) for d in payload["items"]]
        message = digest_blocks.owner_dm(payload["local_date"], items)
        # A group owner is several DMs in one item: a crash mid-way repeats the ones already sent.
        for user in users:
            self.client.deliver("chat_postMessage", channel=user, unfurl_links=False, unfurl_media=False,
                       **message)


def published_heads(client: SlackClient, channel: str, days: int) -> list[changelog.Anchor]:
    """Every chain head the digest published in `channel` over the last `days` days, read back from
    the metadata of the bot's own messages (replies included when a digest's heads did not fit in
    one message). Another app's message of the same type is not taken for ours."""
    me = client.auth_test()
    mine = {v for v in (me.get("user_id"), me.get("bot_id")) if v}
    oldest = clock.epoch(clock.now()) - days * 86400
    found: list[changelog.Anchor] = []

    def take(message: dict[str, Any]) -> int:
        meta = message.get("metadata") or {}
        if meta.get("event_type") != changelog.HEADS_EVENT or not ({message.get("user"), message.get("bot_id")} & mine):
            return 0
        p = meta.get("event_payload") or {}
        source = f"in the digest of {p.get('local_date', '?')}, Slack message {message.get('ts')}"
        for head in p.get("heads", []):
            pid, seq, digest = (head["process_id"], head["seq"], head["hash"]) if isinstance(head, dict) else head
            found.append(changelog.Anchor(str(pid), int(seq), str(digest), source))
        return int(p.get("parts") or 1)

    cursor = None
    while True:
        page = client.deliver("conversations_history", channel=channel, include_all_metadata=True, limit=200,
                              oldest=str(oldest), **({"cursor": cursor} if cursor else {}))
        for m in page.get("messages", []):
            if take(m) > 1:
                replies = client.deliver("conversations_replies", channel=channel, ts=m["ts"],
                                         include_all_metadata=True, limit=200)
                for r in replies.get("messages", []):
                    if r.get("ts") != m["ts"]:
                        take(r)
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return found
