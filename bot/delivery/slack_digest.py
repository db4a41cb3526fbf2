"""The outbox handler that posts the daily digest (kind "digest"): the channel post, and one DM item
per owner with what is overdue on them. The digest was frozen into the payload when the day was
claimed; only the owner check (a Slack lookup) happens here, outside any database transaction."""

from __future__ import annotations

import logging

from bot.delivery.directory import Directory
from bot.delivery.outbox import Outbox, PermanentFailure
from bot.delivery.slack_client import SlackClient
from bot.surfaces import digest_blocks
from bot.surfaces.digest import OUTBOX_KIND, Digest, check_owners, item_from_dict

log = logging.getLogger("aopbot.digest")


class DigestSender:
    def __init__(self, client: SlackClient, directory: Directory):
        self.client = client
        self.directory = directory

    def register(self, ob: Outbox) -> None:
        ob.register(OUTBOX_KIND, self.deliver)

    def deliver(self, item) -> None:
        payload = item.payload
        if payload["to"] == "channel":
            digest = check_owners(Digest.from_payload(payload["digest"]), self.directory.resolve)
            self.client.deliver("chat_postMessage", channel=payload["channel"], unfurl_links=False,
                       unfurl_media=False, **digest_blocks.digest_message(digest))
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
