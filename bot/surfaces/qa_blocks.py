"""Block Kit for sampling QA: the review card (one pure function for each of its states), the Wrong
modal, the replies to a reviewer, and the error-rate wording shared by /aop stats and the digest.

What the agent recorded is shown as plain text under labels the bot writes (blocks.agent_plain), so
it can never mention anyone, ping a channel or pass for the bot's own status line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from bot.domain.qa import ErrorRate, Waiting
from bot.surfaces.blocks import (
    FIELD_TEXT,
    _kv_field,
    _message,
    _section,
    agent_plain,
    asking_modal,
    button,
    date,
    duration,
    escape,
    people,
    person,
    safe,
)
from bot.surfaces.qa_cards import QaCard

ACTION_QA_OK = "aop_qa_ok"
ACTION_QA_WRONG = "aop_qa_wrong"
QA_WRONG_MODAL = "aop_qa_wrong_modal"
NOTE_BLOCK = "qa_note"
NOTE_INPUT = "qa_note_input"

VERDICT_LABEL = {"ok": (":white_check_mark:", "Looks right"), "wrong": (":x:", "Wrong")}


class QaButtonValue(BaseModel):
    """What a QA button carries: the review it acts on."""

    q: int


def qa_button_value(review_id: int) -> str:
    return QaButtonValue(q=review_id).model_dump_json()


def percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _verdict_line(card: QaCard) -> str:
    emoji, label = VERDICT_LABEL.get(card.status, (":grey_question:", card.status))
    line = f"{emoji} *{label}*"
    if card.reviewed_by:
        line += f" — reviewed by {person(card.reviewed_by)}"
    if card.reviewed_at:
        line += f" · {date(card.reviewed_at)}"
    if card.note:
        line += f"\n*Note:* {safe(card.note, 2000)}"
    return line


def review_message(card: QaCard) -> dict[str, Any]:
    """The card in the process channel: the recorded action, then Looks right / Wrong while it waits,
    or the verdict once given."""
    head = (f":mag: *QA review* · *{escape(card.process_name)}* · tier {card.tier} · "
            f"{percent(card.rate)} of recorded actions are sampled")
    blocks: list[dict[str, Any]] = [
        _section(head),
        _section("*What the agent did*"),
        {"type": "section", "text": agent_plain(card.decision, 2800)},
        {"type": "section", "fields": [
            _kv_field("Inputs", card.inputs),
            agent_plain("Tools\n" + (", ".join(card.tools) or "none"), FIELD_TEXT, one_line=False),
            agent_plain("Policy checks\n" + ("\n".join(card.policy_checks) or "none"), FIELD_TEXT, one_line=False),
        ]},
        {"type": "context", "elements": [
            agent_plain(f"Agent: {card.agent_name}", 200), agent_plain(f"Model: {card.model}", 200),
            agent_plain(f"Recorded: {card.timestamp}", 200),
            {"type": "mrkdwn", "text": f"change log `#{card.seq}` · hash `{escape(card.hash[:12])}`"
                                       + (f" · trace `{safe(card.trace_id, 100)}`" if card.trace_id else "")}]},
        {"type": "divider"},
    ]
    if card.is_open:
        blocks.append(_section(f"Was this right? Reviewers: {people(card.reviewers)} · review by "
                               f"{date(card.due_at)}. The first verdict counts, and goes to the change log "
                               "and back to the agent."))
        value = qa_button_value(card.id)
        blocks.append({"type": "actions", "block_id": f"qa:{card.id}", "elements": [
            button("Looks right", ACTION_QA_OK, value, "primary"),
            button("Wrong", ACTION_QA_WRONG, value, "danger"),
        ]})
        text = f"QA review: {escape(card.process_name)}: {safe(card.decision, 500)}"
    else:
        blocks.append(_section(_verdict_line(card)))
        text = f"QA {VERDICT_LABEL.get(card.status, ('', card.status))[1]}: {safe(card.decision, 500)}"
    return _message(text, blocks)


class QaModalMeta(BaseModel):
    """What the Wrong modal carries to its submission (private_metadata)."""

    q: int  # the review
    c: str | None = None  # channel of the card, for a private reply
    t: str | None = None  # the card's ts


def wrong_modal(review_id: int, decision: str, channel: str | None, message_ts: str | None) -> dict[str, Any]:
    meta = QaModalMeta(q=review_id, c=channel, t=message_ts).model_dump_json()
    return asking_modal(QA_WRONG_MODAL, meta, "Wrong action", "Mark wrong",
                        f"*What the agent did:* {safe(decision, 2800)}", NOTE_BLOCK, NOTE_INPUT,
                        "What was wrong? The agent and the change log get this.")


# -- replies to one person ----------------------------------------------------------------------------


def not_allowed_text(reviewers: list[str]) -> str:
    return f"You can't review this action. Only {people(reviewers)} can (the process's qa.reviewers)."


def closed_text(status: str, reviewed_by: str | None, reviewed_at: datetime | None) -> str:
    label = VERDICT_LABEL.get(status, ("", status))[1]
    who = f" by {person(reviewed_by)}" if reviewed_by else ""
    when = f" at {date(reviewed_at)}" if reviewed_at else ""
    return f"Already reviewed{who}{when}: *{label}*. Each action is reviewed once; nothing changed."


# -- the error rate, in /aop stats and the digest -----------------------------------------------------------


def error_rate_text(r: ErrorRate) -> str:
    """8.0% (95% CI 4.1–15.0%; 8 wrong of 100 reviewed)."""
    if not r.reviewed:
        return "no reviews yet"
    low, high = r.interval
    return (f"{percent(r.rate or 0.0)} (95% CI {percent(low)[:-1]}–{percent(high)}; "
            f"{r.wrong} wrong of {r.reviewed} reviewed)")


def waiting_text(w: Waiting, now: datetime) -> str:
    if not w.pending:
        return "nothing waiting for review"
    text = f"{w.pending} waiting for review"
    if w.overdue:
        oldest = f", oldest {duration((now - w.oldest_overdue).total_seconds())}" if w.oldest_overdue else ""
        text += f", {w.overdue} overdue{oldest}"
    return text


def stats_line(rate: float, r: ErrorRate, w: Waiting, max_error_rate: float, now: datetime) -> str:
    """/aop stats: the process's QA over the window."""
    if rate <= 0 and not r.reviewed and not w.pending:
        return "Sampling QA: off (qa.sample_rate 0)"
    flag = (f" :warning: above qa.max_error_rate {percent(max_error_rate)}" if r.above(max_error_rate) else "")
    return (f"QA error rate: *{error_rate_text(r)}*{flag} · sampling {percent(rate)} of recorded actions · "
            f"{waiting_text(w, now)}")
