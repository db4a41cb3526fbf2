"""Modal submissions: the reject reason."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bot.domain import inbox
from bot.surfaces import blocks
from handlers.actions import reply_for
from handlers.common import services, tell, write_down_then_apply
from handlers.events import publish_home

REJECT_MODAL = blocks.REJECT_MODAL
M = TypeVar("M", bound=BaseModel)
DID_NOT_GO_THROUGH_MODAL = ("That did not go through: aopbot could not reach its database, so nothing changed. "
                            "Your reason is still here: submit again in a moment.")


def read_submission(ack, view: dict, meta_model: type[M], block: str, input_id: str, stale: str,
                    required: str) -> tuple[M, str] | None:
    """The modal's metadata and its text, or None once the modal was answered with an error: a form
    not ours (or from an older release) asks for a fresh click; a blank text is refused in place."""
    try:
        meta = meta_model.model_validate_json(view.get("private_metadata") or "")
    except ValidationError:
        ack(response_action="errors", errors={block: stale})
        return None
    values = view.get("state", {}).get("values", {})
    text = (((values.get(block) or {}).get(input_id) or {}).get("value") or "").strip()
    if not text:
        ack(response_action="errors", errors={block: required})
        return None
    return meta, text


def accept_with_reason(ack, client, svc, user: str, kind: inbox.Kind, target: str | int, reason: str, block: str,
                       where: tuple[str | None, str | None], reply) -> None:
    """Write the submission down before the ack (the reason survives a crash), apply it after; when
    the database fails inside the ack budget the modal stays open with its text, to submit again."""
    def keep_the_modal_open() -> None:  # the person's reason is still in it: they submit again
        ack(response_action="errors", errors={block: DID_NOT_GO_THROUGH_MODAL})

    write_down_then_apply(ack, client, svc, lambda: inbox.accept(svc.db, kind, user, target, reason), reply,
                          (user, *where), failed_ack=keep_the_modal_open)


def on_reject_submitted(ack, body, client, context, view):
    svc = services(context)
    user = body["user"]["id"]
    read = read_submission(ack, view, blocks.RejectModalMeta, blocks.REASON_BLOCK, blocks.REASON_INPUT,
                           "This form is out of date; click Reject again.", "A reason is required to reject.")
    if read is None:
        return
    meta, reason = read

    def reply(outcome) -> None:
        if meta.home:
            publish_home(svc, client, user)
        text = None if outcome.result == "decided" else reply_for(svc, outcome, "decide on")
        if text:
            tell(client, user, meta.c, meta.t, text)
    accept_with_reason(ack, client, svc, user, "reject", meta.e, reason, blocks.REASON_BLOCK,
                       (meta.c, meta.t), reply)
