"""What every listener shares: the services, parsing button values, ack-within-budget, replies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pydantic import ValidationError

from bot.domain import inbox
from bot.surfaces import blocks

log = logging.getLogger("aopbot.handlers")
T = TypeVar("T")

# Leave Slack's 3 s limit room for the network: the ack goes out by then whatever the database does.
ACK_BUDGET_S = 2.0
_work = ThreadPoolExecutor(max_workers=16, thread_name_prefix="aop-work")
# Decisions applied after their ack: one thread of their own. More only contend (a process's
# decisions queue on its chain lock anyway) and take the CPU the next acks need: measured at 100
# clicks/s on PostgreSQL, 8 threads gave acks a p99 of 543 ms, one gives 49 ms (docs/BENCHMARKS.md).
_apply = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aop-apply")
# Replies to the person who clicked wait on Slack: never inside the apply thread.
_reply = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aop-reply")


def skip_slack_retries(request, next):  # noqa: A002 - Bolt's middleware signature
    """Slack re-sends an event it thinks we missed (X-Slack-Retry-Num); we acted on the first one."""
    from slack_bolt import BoltResponse

    if request.headers.get("x-slack-retry-num") and request.body.get("type") == "event_callback":
        return BoltResponse(status=200, body="")
    next()


def services(context) -> Any:
    return context["aop"]


def parse_button(body: dict[str, Any]) -> str | None:
    try:
        return blocks.ButtonValue.model_validate_json(body["actions"][0]["value"]).e
    except (KeyError, IndexError, ValidationError):
        return None


class FailedBeforeAck(Exception):
    """The work failed inside the budget and the failure itself was the ack (failed_ack)."""


def after_ack(work: Callable[[], None]) -> None:
    """Run work after the ack on our own threads, so Bolt's listener threads (which take the next
    requests) never wait on a slow database; a failure is logged, never lost silently."""
    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("work after the ack failed")
    _apply.submit(run)


def apply_after_ack(svc, row_id: int, reply: Callable[[Any], None]) -> None:
    """After the ack, on the apply thread: apply the inbox row, wake delivery, then reply(outcome)
    on the reply threads. A failure leaves the row in the inbox for the next tick to apply."""
    def apply() -> None:
        try:
            outcome = inbox.apply(svc.db, row_id)
        except Exception:
            log.exception("a click could not be applied yet; it stays in the inbox")
            return
        if outcome is None:  # a replica replaying the inbox got there first
            return
        if outcome.result in ("decided", "vote_recorded", "acknowledged", "reviewed"):
            svc.kick()
        reply_later(lambda: reply(outcome))
    after_ack(apply)


def reply_later(work: Callable[[], None]) -> None:
    """A Slack reply (ephemeral, App Home) after an applied click, off the apply thread."""
    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("a reply after a click failed")
    _reply.submit(run)


def ack_within_budget(ack: Callable[..., None], work: Callable[[], T],
                      failed_ack: Callable[[], None] | None = None) -> T:
    """Do the durable work first when the database is quick (so nothing acked can be lost), but
    ack by ACK_BUDGET_S regardless; the work then finishes after the ack. failed_ack answers a
    failure that came inside the budget (a modal kept open with an error) and raises FailedBeforeAck."""
    future: Future[T] = _work.submit(work)
    try:
        return_value = future.result(timeout=ACK_BUDGET_S)
    except FutureTimeout:
        ack()
        return future.result()
    except Exception as e:
        if failed_ack is None:
            ack()
            raise
        failed_ack()
        raise FailedBeforeAck() from e
    ack()
    return return_value


def answer_within_budget(ack: Callable[..., None], respond: Callable[..., None],
                         work: Callable[[], dict[str, Any]]) -> None:
    """Ack with the answer itself when it is ready in time; otherwise ack at once with a short note
    and send the answer through response_url when it is ready."""
    future = _work.submit(work)
    try:
        answer = future.result(timeout=ACK_BUDGET_S)
    except FutureTimeout:
        ack(response_type="ephemeral", text="Working on it…")
        try:
            respond(response_type="ephemeral", replace_original=False, **future.result())
        except Exception:
            log.exception("/aop failed after the ack")
            respond(response_type="ephemeral", text="Sorry, that failed; try again in a moment.")
        return
    except Exception:
        log.exception("/aop failed")
        ack(response_type="ephemeral", text="Sorry, that failed; try again in a moment.")
        return
    ack(response_type="ephemeral", **answer)


DID_NOT_GO_THROUGH = ("That did not go through: aopbot could not reach its database, so nothing changed. "
                      "The button still works; try again in a moment.")


def in_app_home(body: dict[str, Any]) -> bool:
    return (body.get("container") or {}).get("type") == "view" and (body.get("view") or {}).get("type") == "home"


def where_clicked(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(channel, thread ts) of the clicked message, for an ephemeral reply next to it."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    msg = body.get("message") or {}
    return channel, msg.get("thread_ts") or msg.get("ts")


def tell(client, user: str, channel: str | None, thread_ts: str | None, text: str) -> None:
    """A private reply to one person; in a DM or without a channel, a DM."""
    try:
        if channel and not channel.startswith("D"):
            client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        else:
            client.chat_postMessage(channel=user, text=text)
    except Exception:
        log.exception("could not reply to %s", user)
