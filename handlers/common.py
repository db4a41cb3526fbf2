"""What every listener shares: the services, parsing button values, the ack budgets, replies.

The Bolt app runs with process_before_response=True (bot/ops/app.py): Slack gets its answer when a
listener returns, so a listener does only what must come before the ack (the durable write of a
click, a quick /aop answer, an answer that keeps a modal open) and hands everything else to our own
threads: applying the click, private replies, opening a modal, App Home.
"""

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

# Leave Slack's 3 s limit room for the network: a click is acked by then whatever the database does.
ACK_BUDGET_S = 2.0
# A person typed /aop and waits: past this, "Working on it…" and the answer through response_url.
COMMAND_BUDGET_S = 0.3
WORKING_ON_IT = "Working on it…"
# The work a request waits on (a click's durable write, an /aop answer), with a bounded wait.
_work = ThreadPoolExecutor(max_workers=16, thread_name_prefix="aop-work")
# Decisions applied after their ack: one thread of their own. More only contend (a process's
# decisions queue on its chain lock anyway) and take the CPU the next acks need: measured at 100
# clicks/s on PostgreSQL, 8 threads gave acks a p99 of 543 ms, one gives 49 ms (docs/BENCHMARKS.md).
_apply = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aop-apply")
# Replies to a person after the ack (ephemerals, DMs, App Home, response_url) wait on Slack: never
# inside the apply thread.
_reply = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aop-reply")
# Modals: the trigger_id lasts 3 s, so opening one never queues behind replies a slow Slack holds up.
_dialog = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aop-dialog")


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


def _run(pool: ThreadPoolExecutor, work: Callable[[], None], what: str) -> None:
    """work on pool after the ack; a failure is logged, never lost silently."""
    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("%s failed", what)
    pool.submit(run)


def reply_later(work: Callable[[], None]) -> None:
    """A Slack call for a person after the ack (a reply, App Home, a response_url answer)."""
    _run(_reply, work, "a reply after the ack")


def open_dialog_later(work: Callable[[], None]) -> None:
    """Check a click and open its modal after the ack, within the 3 s of its trigger_id."""
    _run(_dialog, work, "opening a dialog")


def tell_later(client, user: str, channel: str | None, thread_ts: str | None, text: str) -> None:
    reply_later(lambda: tell(client, user, channel, thread_ts, text))


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
    _run(_apply, apply, "work after the ack")


def ack_within_budget(ack: Callable[..., None], work: Callable[[], T], then: Callable[[T], None],
                      failed: Callable[[], None], failed_ack: Callable[[], None] | None = None) -> None:
    """Do the durable work before the ack when the database is quick (so nothing Slack saw acked can
    be lost), but ack by ACK_BUDGET_S regardless and return: the work then goes on without the
    listener, and then(result) or failed() follow when it ends. failed_ack, when given, answers a
    failure that came inside the budget in the ack itself (a modal kept open with an error).
    then and failed must only hand work on: they may run on the request thread or the work thread."""
    # The request thread waits on the Future (woken by its completion: no polling) rather than
    # writing the row itself: a database statement cannot be given a deadline, the ack can.
    future: Future[T] = _work.submit(work)
    try:
        result = future.result(timeout=ACK_BUDGET_S)
    except FutureTimeout:
        ack()
        future.add_done_callback(lambda done: _finish(done, then, failed))
        return
    except Exception:
        log.exception("work before the ack failed")
        if failed_ack is not None:
            failed_ack()
            return
        ack()
        failed()
        return
    ack()
    then(result)


def _finish(done: Future[T], then: Callable[[T], None], failed: Callable[[], None]) -> None:
    """The end of work that outlived its ack budget (the listener has returned)."""
    try:
        result = done.result()
    except Exception:
        log.exception("work after the ack failed")
        failed()
        return
    then(result)


def write_down_then_apply(ack, client, svc, accept: Callable[[], int], reply: Callable[[Any], None],
                          where: tuple[str, str | None, str | None],
                          failed_ack: Callable[[], None] | None = None) -> None:
    """A click or a submission: written to the inbox before the ack (accept: one short INSERT),
    applied after it. where is (user, channel, thread ts), told when it did not go through."""
    ack_within_budget(ack, accept, lambda row_id: apply_after_ack(svc, row_id, reply),
                      lambda: tell_later(client, *where, DID_NOT_GO_THROUGH), failed_ack)


SORRY = "Sorry, that failed; try again in a moment."


def answer_within_budget(ack: Callable[..., None], respond: Callable[..., None],
                         work: Callable[[], dict[str, Any]]) -> None:
    """Ack with the answer itself when it is ready within COMMAND_BUDGET_S; otherwise ack at once with
    a short note, return, and send the answer through response_url when it is ready."""
    future = _work.submit(work)
    try:
        answer = future.result(timeout=COMMAND_BUDGET_S)
    except FutureTimeout:
        ack(response_type="ephemeral", text=WORKING_ON_IT)

        def answer_later(done: Future[dict[str, Any]]) -> None:  # on a reply thread, once the work ends
            _finish(done, lambda later: respond(response_type="ephemeral", replace_original=False, **later),
                    lambda: respond(response_type="ephemeral", text=SORRY))
        future.add_done_callback(lambda done: reply_later(lambda: answer_later(done)))
        return
    except Exception:
        log.exception("/aop failed")
        ack(response_type="ephemeral", text=SORRY)
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
    """A private reply to one person; in a DM or without a channel, a DM. It waits on Slack: after
    the ack, call it on our threads (tell_later), never in a listener."""
    try:
        if channel and not channel.startswith("D"):
            client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        else:
            client.chat_postMessage(channel=user, text=text)
    except Exception:
        log.exception("could not reply to %s", user)
