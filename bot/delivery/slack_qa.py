"""Outbox handlers for sampling QA: post a sampled action's review card in its process channel
(qa_card) and update it in place once reviewed (qa_render).

The card is posted with post_once (a crash between the post and writing its ts down adopts the
message instead of posting it twice); reviewers given as groups or emails are resolved before the
card can be clicked, and frozen onto the review.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import update

from bot.delivery.directory import Directory
from bot.delivery.outbox import Outbox, PermanentFailure, RetryLater
from bot.delivery.slack_client import SlackClient
from bot.domain import qa
from bot.domain.models import QaReview
from bot.ops.db import Database
from bot.surfaces import qa_blocks
from bot.surfaces.qa_cards import QaCard, build_qa_card

log = logging.getLogger("aopbot.qa")

RENDER_GIVES_UP = timedelta(hours=1)  # a card that was never posted has nothing to update


class QaFlows:
    def __init__(self, db: Database, client: SlackClient, directory: Directory):
        self.db = db
        self.client = client
        self.directory = directory

    def register(self, ob: Outbox) -> None:
        ob.register(qa.CARD_KIND, self.post)
        ob.register(qa.RENDER_KIND, self.render, give_up_after=RENDER_GIVES_UP)

    def _load(self, review_id: int) -> tuple[QaReview, QaCard]:
        with self.db.transaction() as s:
            row = s.get(QaReview, review_id)
            if row is None:
                raise PermanentFailure(f"QA review {review_id} is gone")
            card = build_qa_card(s, row)
            s.expunge(row)
        return row, card

    def _set(self, review_id: int, **values) -> None:
        with self.db.transaction() as s:
            s.execute(update(QaReview).where(QaReview.id == review_id).values(**values))

    def post(self, item) -> None:
        row, card = self._load(item.payload["review"])
        if row.resolved is None:  # before anyone can click: who may review, as Slack user IDs
            unresolved: list[str] = []
            resolved = self.directory.resolve_all(row.snapshot["reviewers"], unresolved)
            if unresolved:
                log.warning("QA reviewers Slack cannot resolve: %s", ", ".join(unresolved),
                            extra={"process_id": row.process_id})
            self._set(row.id, resolved=resolved)
        if row.ts:
            return
        resp = self.client.post_once(f"qa:{row.id}", item.attempts > 1, channel=row.snapshot["channel"],
                                     unfurl_links=False, unfurl_media=False, **qa_blocks.review_message(card))
        self._set(row.id, channel=resp["channel"], ts=resp["ts"])

    def render(self, item) -> None:
        row, card = self._load(item.payload["review"])
        if not row.ts:
            raise RetryLater("the QA card has not been posted yet", delay_s=2)
        self.client.deliver("chat_update", channel=row.channel, ts=row.ts, **qa_blocks.review_message(card))
