"""Buttons on escalation messages: Approve, Reject (opens the reason modal), Acknowledge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.domain import escalations, inbox
from bot.surfaces import blocks
from handlers.common import (
    DID_NOT_GO_THROUGH,
    in_app_home,
    log,
    open_dialog_later,
    parse_button,
    services,
    tell,
    tell_later,
    where_clicked,
    write_down_then_apply,
)
from handlers.events import publish_home

APPROVE = blocks.ACTION_APPROVE
REJECT = blocks.ACTION_REJECT
ACK = blocks.ACTION_ACK


def reply_for(svc, outcome: escalations.Outcome, acting: str) -> str | None:
    """The private message a person gets for their click, or None when the thread says it all."""
    if outcome.result == "not_found":
        return "That escalation no longer exists."
    if outcome.result == "not_allowed":
        return blocks.not_allowed_text(outcome.deciders, acting)
    if outcome.result == "closed":
        esc = outcome.escalation  # loaded by the domain call: no second read
        return blocks.closed_text(esc.status, esc.decided_by, esc.decided_at)
    if outcome.result == "already_voted":
        progress = outcome.quorum.progress() if outcome.quorum else ""
        return f"You already approved this; one person counts once ({progress})."
    if outcome.result == "already_acknowledged":
        return "Someone already took this; the decision is still needed."
    return None


def _on_click(ack, body, client, context, kind: inbox.Kind, answer: Callable[[Any], str | None],
              parse: Callable[[dict[str, Any]], str | int | None] = parse_button,
              stale: str = "That button is out of date; open the escalation again."):
    """Write the click down (one short INSERT), ack and return; it is applied on our own threads: the
    ack never waits on the decision or on Slack, and a click Slack saw acknowledged survives a crash
    (the inbox is replayed). parse reads what the button acts on (an escalation; a QA review for the
    QA buttons)."""
    svc = services(context)
    user = body["user"]["id"]
    target = parse(body)
    channel, thread_ts = where_clicked(body)
    if target is None:
        ack()
        tell_later(client, user, channel, thread_ts, stale)
        return

    def reply(outcome) -> None:  # on a reply thread
        if in_app_home(body):
            publish_home(svc, client, user)  # the item leaves "Waiting on you" (or shows its progress)
        text = answer(outcome)
        if text:
            tell(client, user, channel, thread_ts, text)
    write_down_then_apply(ack, client, svc, lambda: inbox.accept(svc.db, kind, user, target), reply,
                          (user, channel, thread_ts))


def on_approve(ack, body, client, context):
    def answer(outcome: escalations.Outcome) -> str | None:
        if outcome.result == "vote_recorded" and outcome.quorum:
            return f"Your approval is recorded: {outcome.quorum.progress()}."
        return reply_for(services(context), outcome, "decide on")
    _on_click(ack, body, client, context, "approve", answer)


def on_acknowledge(ack, body, client, context):
    _on_click(ack, body, client, context, "acknowledge",
              lambda outcome: reply_for(services(context), outcome, "acknowledge"))


def on_reject(ack, body, client, context):
    """Check the person may decide, then open the modal that asks why."""
    def modal(esc_id: str, check: escalations.Outcome, channel: str | None, message_ts: str | None) -> dict:
        return blocks.reject_modal(esc_id, check.escalation.request["action"]["summary"], channel, message_ts,
                                   from_home=in_app_home(body))
    open_modal_if_allowed(ack, body, client, context, parse_button, escalations.check_may_decide,
                          lambda check: reply_for(services(context), check, "decide on"), modal,
                          "That button is out of date; open the escalation again.")


def open_modal_if_allowed(ack, body, client, context, parse: Callable[[dict[str, Any]], Any],
                          check: Callable[[Any, Any, str], Any], refusal: Callable[[Any], str | None],
                          modal: Callable[[Any, Any, str | None, str | None], dict], stale: str) -> None:
    """Ack and return; then, on a dialog thread, check (in the database) that the person may act on
    what the button names and open the modal that asks for their text: the trigger lasts 3 s, so
    nothing is written before it opens."""
    svc = services(context)
    user = body["user"]["id"]
    target = parse(body)
    channel, thread_ts = where_clicked(body)
    ack()
    if target is None:
        tell_later(client, user, channel, thread_ts, stale)
        return

    def check_and_open() -> None:
        try:
            checked = check(svc.db, target, user)
        except Exception:
            log.exception("a click that opens a dialog could not be checked")
            tell(client, user, channel, thread_ts, DID_NOT_GO_THROUGH)
            return
        if checked.result != "ok":
            text = refusal(checked)
            if text:
                tell(client, user, channel, thread_ts, text)
            return
        client.views_open(trigger_id=body["trigger_id"],
                          view=modal(target, checked, channel, (body.get("message") or {}).get("ts")))
    open_dialog_later(check_and_open)
