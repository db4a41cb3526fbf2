"""Modal submissions: the reject reason."""

from __future__ import annotations

from pydantic import ValidationError

from bot.domain import inbox
from bot.surfaces import blocks
from handlers.actions import reply_for
from handlers.common import (
    DID_NOT_GO_THROUGH,
    FailedBeforeAck,
    ack_within_budget,
    apply_after_ack,
    log,
    services,
    tell,
)
from handlers.events import publish_home

REJECT_MODAL = blocks.REJECT_MODAL
DID_NOT_GO_THROUGH_MODAL = ("That did not go through: aopbot could not reach its database, so nothing changed. "
                            "Your reason is still here: submit again in a moment.")


def on_reject_submitted(ack, body, client, context, view):
    svc = services(context)
    user = body["user"]["id"]
    try:
        meta = blocks.RejectModalMeta.model_validate_json(view.get("private_metadata") or "")
        esc_id = meta.e
    except ValidationError:  # not ours, or from an older release: ask for a fresh click
        ack(response_action="errors", errors={blocks.REASON_BLOCK: "This form is out of date; click Reject again."})
        return
    values = view.get("state", {}).get("values", {})
    reason = ((values.get(blocks.REASON_BLOCK) or {}).get(blocks.REASON_INPUT) or {}).get("value") or ""
    if not reason.strip():
        ack(response_action="errors", errors={blocks.REASON_BLOCK: "A reason is required to reject."})
        return
    def keep_the_modal_open() -> None:  # the person's reason is still in it: they submit again
        ack(response_action="errors", errors={blocks.REASON_BLOCK: DID_NOT_GO_THROUGH_MODAL})

    try:  # written down before the ack (the reason survives a crash), applied after it
        row_id = ack_within_budget(ack, lambda: inbox.accept(svc.db, "reject", user, esc_id, reason.strip()),
                                   failed_ack=keep_the_modal_open)
    except FailedBeforeAck:
        log.exception("a rejection could not be written down; the modal stays open with its reason")
        return
    except Exception:
        log.exception("a rejection could not be written down")
        tell(client, user, meta.c, meta.t, DID_NOT_GO_THROUGH)
        return

    def reply(outcome) -> None:
        if meta.home:
            publish_home(svc, client, user)
        text = None if outcome.result == "decided" else reply_for(svc, outcome, "decide on")
        if text:
            tell(client, user, meta.c, meta.t, text)
    apply_after_ack(svc, row_id, reply)
