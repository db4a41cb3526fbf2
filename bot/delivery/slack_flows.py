"""Outbox handlers that talk to Slack: page (post, thread card, first level), notify (later levels),
render (updates in place), fallback (DM the owner when Slack refuses), announce (pause/resume).

Each handler is idempotent at the step level: what it posted is written down (slack_messages)
before any later post that could not be found again (see Posts), so a crash repeats at most the one
call in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.delivery import outbox
from bot.delivery.directory import Directory
from bot.delivery.outbox import Outbox, PermanentFailure, RetryLater
from bot.delivery.slack_client import SlackClient
from bot.domain import governance, paging
from bot.domain.models import Escalation, OutboxItem, SlackMessage
from bot.domain.registry import is_user_id
from bot.ops import clock
from bot.ops.db import Database, upsert_insert
from bot.surfaces import blocks
from bot.surfaces.cards import Card, build_card

log = logging.getLogger("aopbot.flows")


def fallback_hook(what: str, card: bool):
    """An outbox failure hook that queues a fallback DM to the accountable owner."""
    def hook(session, item, reason: str) -> None:
        if item.escalation_id:
            outbox.enqueue(session, "fallback", f"fallback:{item.escalation_id}",
                           {"what": what, "reason": reason, "card": card}, escalation_id=item.escalation_id,
                           trace_id=item.payload.get("trace_id"))
    return hook


def page_failed_hook(session, item, reason: str) -> None:
    """The channel refused the escalation for good: the accountable owner gets the card by DM, and so
    do the first level's people, so the decision can still be made."""
    fallback_hook("post it in the process channel", card=True)(session, item, reason)
    if item.payload.get("first_level"):
        outbox.enqueue(session, "notify", f"esc:{item.escalation_id}", {"step": 0, "level": 0, "cycle": 0},
                       escalation_id=item.escalation_id, trace_id=item.payload.get("trace_id"))


def _message(esc_id: str, kind: str, resp, recipient: str = "") -> SlackMessage:
    """The row that says a message was posted (Slack's answer: its channel and ts)."""
    return SlackMessage(escalation_id=esc_id, kind=kind, recipient=recipient, channel=resp["channel"],
                        ts=resp["ts"], created_at=clock.now())


class Posts:
    """What one delivery posted, to be written down. A message posted with post_once may wait for the
    outbox row's "done" commit: a retry finds it in Slack by its key. One that cannot be found again
    (a DM, a note) is written down before the next such post, so a crash repeats at most the one
    call in flight. Written with ON CONFLICT DO NOTHING: a worker that took the row over after our
    lease ran out may have written the same message."""

    def __init__(self, db: Database):
        self.db = db
        self.unwritten: list[SlackMessage] = []
        self._unfindable = False  # among unwritten, a message a retry could not find in Slack

    def add(self, esc_id: str, kind: str, resp, recipient: str = "", findable: bool = False) -> SlackMessage:
        self.unwritten.append(msg := _message(esc_id, kind, resp, recipient))
        self._unfindable = self._unfindable or not findable
        return msg

    def before_plain_post(self) -> None:
        if self._unfindable:
            self.write_down_now()

    def write_down_now(self) -> None:
        if self.unwritten:
            with self.db.transaction() as s:
                _write_down(s, self.unwritten)
            self.unwritten, self._unfindable = [], False

    def with_done(self) -> Callable[[Any], None] | None:
        rows, self.unwritten = self.unwritten, []
        return (lambda s: _write_down(s, rows)) if rows else None


def _write_down(s, msgs: list[SlackMessage]) -> None:
    columns = [c.key for c in SlackMessage.__table__.columns if c.key != "id"]
    values = [{c: getattr(m, c) for c in columns} for m in msgs]
    s.execute(upsert_insert(s, SlackMessage).values(values)
              .on_conflict_do_nothing(index_elements=["escalation_id", "kind", "recipient"]))


class SlackFlows:
    def __init__(self, db: Database, client: SlackClient, directory: Directory):
        self.db = db
        self.client = client
        self.directory = directory
        self._workspace_url: str | None = None

    def permalink(self, channel: str | None, ts: str | None) -> str | None:
        """A link to a message without a Slack call per message: the workspace URL (auth.test, once)
        plus Slack's archive path, the same form chat.getPermalink returns."""
        if not channel or not ts:
            return None
        if self._workspace_url is None:
            try:
                self._workspace_url = self.client.auth_test().get("url") or ""
            except Exception:
                log.warning("auth.test failed; links to threads are left out")
                return None
        if not self._workspace_url:
            return None
        return f"{self._workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"

    def register(self, ob: Outbox) -> None:
        ob.register("page", self.page, on_failure=page_failed_hook)
        ob.register("notify", self.notify, on_failure=fallback_hook("page the next level", card=True))
        ob.register("fallback", self.fallback)
        ob.register("render", self.render)
        ob.register("announce", self.announce)
        ob.register("check_people", self.check_people)
        ob.register("model_note", self.model_note)

    # -- helpers ----------------------------------------------------------------------------------
    def _load(self, esc_id: str) -> tuple[Escalation, Card, dict[tuple[str, str], SlackMessage]]:
        """The escalation, its card and its messages, with its people resolved first (groups and
        emails become users before anyone can click; the card names them). Once they are, a read:
        on SQLite it never holds up a writer (a click's inbox row)."""
        with self.db.reading() as s:
            esc = s.get(Escalation, esc_id)
            if esc is None:
                raise PermanentFailure(f"escalation {esc_id} is gone")
            if esc.resolved is not None:
                return esc, *self._card_and_messages(s, esc)
            snapshot = esc.snapshot
        resolution = self._resolution(snapshot)  # may ask Slack: outside any transaction
        with self.db.transaction() as s:
            esc = s.get(Escalation, esc_id)
            paging.set_resolved(s, esc, resolution)
            return esc, *self._card_and_messages(s, esc)

    @staticmethod
    def _card_and_messages(s, esc: Escalation) -> tuple[Card, dict[tuple[str, str], SlackMessage]]:
        card = build_card(s, esc)
        msgs = {(m.kind, m.recipient): m for m in
                s.scalars(select(SlackMessage).where(SlackMessage.escalation_id == esc.id))}
        for m in msgs.values():
            s.expunge(m)
        s.expunge(esc)
        return card, msgs

    def _remember(self, esc_id: str, kind: str, resp, recipient: str = "") -> None:
        with self.db.transaction() as s:
            s.add(_message(esc_id, kind, resp, recipient))

    def _resolution(self, snap: dict[str, Any]) -> dict[str, Any]:
        """The snapshot's people as Slack users (the directory caches what it asked Slack)."""
        unresolved: list[str] = []
        d = self.directory
        return {
            "approvers": d.resolve_all(snap["approvers"], unresolved),
            "compliance": d.resolve_all(snap["compliance"], unresolved),
            "levels": [d.resolve_all(lvl["notify"], unresolved) for lvl in snap["levels"]],
            "unresolved": unresolved,
            # Names snapshotted once, so the card can name people it must not notify (see Card.mention).
            "names": d.names_of([*snap["approvers"], *snap["compliance"],
                                 *(p for lvl in snap["levels"] for p in lvl["notify"])]),
        }

    # -- handlers ---------------------------------------------------------------------------------
    def _written_down_when_done(self, deliver: Callable[[Posts], None]):
        """Run deliver(posts); what it posted and has not written down yet goes in the transaction
        that marks the outbox row done (returned as its record: one commit for a page, not one per
        message), or at once if the delivery stops part-way, so its retry finds it."""
        posts = Posts(self.db)
        try:
            deliver(posts)
        except BaseException:
            posts.write_down_now()
            raise
        return posts.with_done()

    def page(self, item):
        return self._written_down_when_done(lambda posts: self._page(item, posts))

    def _page(self, item, posts: Posts) -> None:
        esc, card, msgs = self._load(item.escalation_id)
        channel = esc.snapshot["channel"]
        # An earlier attempt may have posted and died before writing it down (a crash, a lost answer):
        # then post_once looks for the message by its key before posting again.
        maybe_posted = item.attempts > 1
        parent = msgs.get(("parent", ""))
        if parent is None:
            resp = self.client.post_once(f"parent:{esc.id}", maybe_posted, channel=channel, unfurl_links=False,
                                         unfurl_media=False, **blocks.parent_message(card))
            parent = msgs["parent", ""] = posts.add(esc.id, "parent", resp, findable=True)
            parent_ts, channel = resp["ts"], resp["channel"]
        else:
            parent_ts, channel = parent.ts, parent.channel
        thread = msgs.get(("thread", ""))
        if thread is None:
            resp = self.client.post_once(f"thread:{esc.id}", maybe_posted, channel=channel, thread_ts=parent_ts,
                                         unfurl_links=False, unfurl_media=False, **blocks.thread_message(card))
            msgs["thread", ""] = posts.add(esc.id, "thread", resp, findable=True)
        if item.payload.get("first_level"):  # the first level is paged in the same pass: fastest, fewest claims
            self.page_level(item, 0, 0, posts, (esc, card, msgs))

    def notify(self, item):
        return self._written_down_when_done(
            lambda posts: self.page_level(item, item.payload["step"], item.payload["level"], posts))

    def page_level(self, item, step: int, level: int, posts: Posts, loaded=None) -> None:
        """One step of the paging timeline: DM that level's people (and, on a re-page, say so in
        the thread). Skipped once someone acknowledged or the escalation ended. When the channel
        refused the post for good, the DM carries the decision card itself. loaded: what page()
        has just read and posted (the card is built once a page: it reads the process's 30 days)."""
        esc, card, msgs = loaded or self._load(item.escalation_id)
        if esc.status != "pending":
            return
        thread = msgs.get(("thread", ""))
        no_channel = thread is None and self._page_failed(esc.id)
        if thread is None and not no_channel:
            raise RetryLater("the page has not been posted yet", delay_s=1)
        resolved = esc.resolved
        targets = resolved["levels"][level] if level < len(resolved["levels"]) else []
        repage = step > 0
        if repage and thread is not None and ("note", str(step)) not in msgs:
            people = esc.snapshot["levels"][level]["notify"]
            waited = int((clock.now() - esc.created_at).total_seconds() // 60)
            posts.before_plain_post()
            resp = self.client.deliver("chat_postMessage", channel=thread.channel, thread_ts=msgs[("parent", "")].ts,
                              **blocks.repage_note(people, level, waited))
            posts.add(esc.id, "note", resp, recipient=str(step))
        kind = "fallback" if no_channel else "dm"
        pending_dms = [u for u in targets if (kind, u if no_channel else f"{u}:{step}") not in msgs]
        if not pending_dms:
            return
        if no_channel:
            note = blocks.delivery_failed_note(esc.snapshot["channel"], "post it in the process channel",
                                               "the channel refused it")
            body = blocks.fallback_message(card, note)
        else:
            body = blocks.dm_message(card, self.permalink(thread.channel, thread.ts), repage=repage)
        failed: dict[str, str] = {}
        for user in pending_dms:
            recipient = user if no_channel else f"{user}:{step}"
            posts.before_plain_post()
            try:
                resp = self.client.deliver("chat_postMessage", channel=user, unfurl_links=False, **body)
            except PermanentFailure as e:  # one person Slack cannot reach must not stop the others' pages
                failed[recipient] = f"<@{user}>: {e}"
                continue
            posts.add(esc.id, kind, resp, recipient=recipient)
        if failed:
            # "Failed for good" and the owner's fallback note commit together: a crash in between
            # would otherwise leave the failures written down (never retried) and nobody told.
            with self.db.transaction() as s:
                for recipient in failed:
                    s.add(SlackMessage(escalation_id=esc.id, kind=kind, recipient=recipient, channel="", ts="",
                                       created_at=clock.now()))
                fallback_hook("page " + ", ".join(failed.values()), card=False)(s, item, "a direct message failed")

    def _page_failed(self, esc_id: str) -> bool:
        """The channel post failed for good (the fallback DM carries the escalation instead)."""
        with self.db.transaction() as s:
            failed = s.scalar(select(OutboxItem.id).where(
                OutboxItem.escalation_id == esc_id, OutboxItem.kind == "page", OutboxItem.status == "failed"))
        return failed is not None

    def render(self, item) -> None:
        esc, card, msgs = self._load(item.escalation_id)
        if (("parent", "") not in msgs or ("thread", "") not in msgs) and not self._page_failed(esc.id):
            raise RetryLater("the page has not been posted yet", delay_s=2)
        # Parent and thread first: they are what the channel sees. One message Slack refuses (a DM
        # deleted, say) must not leave the others stale.
        order = {"parent": 0, "thread": 1}
        problems = []
        for (kind, _recipient), m in sorted(msgs.items(), key=lambda kv: order.get(kv[0][0], 2)):
            if kind == "parent":
                body = blocks.parent_message(card)
            elif kind == "thread":
                body = blocks.thread_message(card)
            elif kind == "fallback":
                body = blocks.fallback_message(card, None)
            elif kind in ("note", "fallback_note") or not m.ts:
                continue
            else:
                body = blocks.dm_message(card, None)
                if card.is_open:
                    continue  # a DM only changes when the escalation ends
            try:
                self.client.deliver("chat_update", channel=m.channel, ts=m.ts, **body)
            except PermanentFailure as e:
                problems.append(f"{kind} {m.channel}/{m.ts}: {e}")
        if problems:
            log.warning("some messages could not be updated: %s", "; ".join(problems),
                        extra={"escalation_id": esc.id, "trace_id": esc.trace_id})

    def fallback(self, item) -> None:
        """Slack refused a delivery for good: tell the accountable owner (with the decision card when
        the channel post itself failed, so the decision can still be made)."""
        esc, card, msgs = self._load(item.escalation_id)
        raci = esc.snapshot["raci"]
        owner = raci.get("accountable") or raci.get("escalation")
        users = self.directory.resolve(owner) if owner else None
        if not users:
            raise PermanentFailure(f"no accountable owner Slack can reach ({owner or 'none configured'})")
        note = blocks.delivery_failed_note(esc.snapshot["channel"], item.payload["what"], item.payload["reason"])
        with_card = bool(item.payload.get("card"))
        for user in users:
            # The card goes to a person once (later updates keep it current); each note is news of its
            # own failure, so a second one for the same owner still goes.
            kind, recipient = ("fallback", user) if with_card else ("fallback_note", f"{user}:{item.id}")
            if (kind, recipient) in msgs:
                continue
            body = blocks.fallback_message(card, note) if with_card else {
                "text": note, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": note}}]}
            resp = self.client.deliver("chat_postMessage", channel=user, unfurl_links=False, **body)
            self._remember(esc.id, kind, resp, recipient=recipient)

    def check_people(self, item) -> None:
        """Ask Slack about each registry person (governance.people_to_check): a user who left
        (deleted), a bot, or someone Slack cannot find is named on the SLO card and in the digest."""
        with self.db.transaction() as s:  # a retry (after a 429) goes on where the last attempt stopped
            done = governance.checked_since(s, item.payload.get("people", []), item.created_at)
        for person in item.payload.get("people", []):
            if person in done:
                continue
            state = self._person_state(person)
            if state is None:
                continue
            with self.db.transaction() as s:
                governance.store_person_check(s, person, state)

    def _person_state(self, person: str) -> str | None:
        """active, deleted, bot or not_found; None when Slack would not say (a missing scope, say):
        not knowing is not the same as a person who left."""
        try:
            if is_user_id(person):
                user = self.client.deliver("users_info", user=person)["user"]
                return "deleted" if user.get("deleted") else "bot" if user.get("is_bot") else "active"
        except PermanentFailure as e:
            if "user_not_found" in str(e):
                return "not_found"
            log.warning("users.info for %s failed (%s); their check waits for the next day", person, e)
            return None
        return "active" if self.directory.resolve(person) else "not_found"

    def model_note(self, item) -> None:
        p = item.payload
        self.client.deliver("chat_postMessage", channel=p["channel"], unfurl_links=False,
                            **blocks.model_change_note(p["process_name"], p["from"], p["to"], p["reported_by"]))

    def announce(self, item) -> None:
        """A process was paused or resumed: say so where its escalations are posted."""
        p = item.payload
        self.client.deliver("chat_postMessage", channel=p["channel"], unfurl_links=False,
                   **blocks.pause_note(p["process_name"], p["status"], p["by"], p.get("reason"), p.get("cancelled", 0)))
