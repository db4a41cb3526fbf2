"""Buttons on QA review cards: Looks right (recorded at once), Wrong (opens the note modal), and the
modal's submission. Like decisions, a verdict is written to the inbox before the ack and applied
after it, so a click Slack saw acknowledged is never lost."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bot.domain import qa
from bot.surfaces import qa_blocks
from handlers.actions import _on_click, open_modal_if_allowed
from handlers.common import services, tell
from handlers.views import accept_with_reason, read_submission

QA_OK = qa_blocks.ACTION_QA_OK
QA_WRONG = qa_blocks.ACTION_QA_WRONG
QA_WRONG_MODAL = qa_blocks.QA_WRONG_MODAL
STALE = "That button is out of date; open the QA card again."


def parse_qa_button(body: dict[str, Any]) -> int | None:
    try:
        return qa_blocks.QaButtonValue.model_validate_json(body["actions"][0]["value"]).q
    except (KeyError, IndexError, ValidationError):
        return None


def reply_for(outcome: qa.Outcome) -> str | None:
    """The private message a reviewer gets, or None when the card says it all."""
    if outcome.result == "not_found":
        return "That QA card no longer exists."
    if outcome.result == "not_allowed":
        return qa_blocks.not_allowed_text(outcome.reviewers)
    if outcome.result == "closed":
        r = outcome.review
        return qa_blocks.closed_text(r.status, r.reviewed_by, r.reviewed_at)
    return None


def on_qa_ok(ack, body, client, context):
    _on_click(ack, body, client, context, "qa_ok", reply_for, parse=parse_qa_button, stale=STALE)


def on_qa_wrong(ack, body, client, context):
    """Check the person may still review it, then open the modal that asks what was wrong."""
    def modal(review_id: int, check: qa.Outcome, channel: str | None, message_ts: str | None) -> dict:
        return qa_blocks.wrong_modal(review_id, check.review.snapshot.get("decision", ""), channel, message_ts)
    open_modal_if_allowed(ack, body, client, context, parse_qa_button, qa.check_may_review,
                          lambda check: reply_for(check) or STALE, modal, STALE)


def on_qa_wrong_submitted(ack, body, client, context, view):
    svc = services(context)
    user = body["user"]["id"]
    read = read_submission(ack, view, qa_blocks.QaModalMeta, qa_blocks.NOTE_BLOCK, qa_blocks.NOTE_INPUT,
                           "This form is out of date; click Wrong again.",
                           "Say what was wrong: the agent learns from it.")
    if read is None:
        return
    meta, note = read

    def reply(outcome: qa.Outcome) -> None:
        text = reply_for(outcome)
        if text:
            tell(client, user, meta.c, meta.t, text)
    accept_with_reason(ack, client, svc, user, "qa_wrong", meta.q, note, qa_blocks.NOTE_BLOCK,
                       (meta.c, meta.t), reply)
