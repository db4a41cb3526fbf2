"""Modal submissions: the reject reason."""

from __future__ import annotations

from pydantic import ValidationError

from bot.domain import escalations
from bot.surfaces import blocks
from handlers.actions import reply_for
from handlers.common import DID_NOT_GO_THROUGH, ack_within_budget, log, services, tell
from handlers.events import publish_home

REJECT_MODAL = blocks.REJECT_MODAL


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
    try:
        outcome = ack_within_budget(ack, lambda: escalations.decide(svc.db, esc_id, user, "reject", reason.strip()))
    except Exception:
        log.exception("a rejection could not be applied")
        tell(client, user, meta.c, meta.t, DID_NOT_GO_THROUGH)
        return
    if meta.home:
        publish_home(svc, client, user)
    if outcome.result == "decided":
        svc.kick()
        return
    text = reply_for(svc, outcome, "decide on")
    if text:
        tell(client, user, meta.c, meta.t, text)
