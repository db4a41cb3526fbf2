"""Block Kit builders: pure functions from a Card (or plain values) to a message or view.

Every untrusted string (anything an agent sent) passes escape(); every text is clipped to its Block
Kit limit, so no input can ping @channel, mention someone, break the layout or be refused by Slack.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from bot.domain.registry import is_user_id
from bot.ops import clock
from bot.surfaces.cards import Card

# Block Kit limits (api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
MAX_FIELDS = 10
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
CONTEXT_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
FALLBACK_TEXT = 3000  # the notification text; Slack's own cap is 40,000
MODAL_TITLE = 24
PRIVATE_METADATA = 3000

ACTION_APPROVE = "aop_approve"
ACTION_REJECT = "aop_reject"
ACTION_ACK = "aop_ack"
REJECT_MODAL = "aop_reject_modal"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")

STATUS_LABEL = {
    "pending": (":large_yellow_circle:", "Waiting for a decision"),
    "acknowledged": (":eyes:", "Acknowledged"),
    "approved": (":white_check_mark:", "Approved"),
    "rejected": (":no_entry:", "Rejected"),
    "expired": (":hourglass:", "Expired (do not act)"),
    "cancelled": (":heavy_multiplication_x:", "Cancelled by the agent"),
}


def escape(text: Any) -> str:
    """Slack's three control characters; with them escaped, <!channel>, <@U…> and links are inert."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most limit characters, ending in … when cut, never in the middle of an &entity;."""
    if len(text) <= limit:
        return text
    cut = _PARTIAL_ENTITY.sub("", text[: limit - 1])
    return cut + "…"


def safe(text: Any, limit: int) -> str:
    return clip(escape(text), limit)


def person(p: str) -> str:
    """A registry person (trusted config) as Slack markup that renders their name."""
    if is_user_id(p):
        return f"<@{p}>"
    if p[:1] == "S" and p.isalnum():
        return f"<!subteam^{p}>"
    return escape(p)


def people(ps: list[str]) -> str:
    return ", ".join(person(p) for p in ps) or "nobody (no approvers configured)"


def named(p: str, mention: frozenset[str], names: dict[str, str]) -> str:
    """A person in a channel post: a mention (which notifies) only if they are being paged now;
    otherwise their snapshotted name in bold, or the raw id in code when Slack gave no name."""
    if p in mention:
        return person(p)
    if p in names:
        return f"*{safe(names[p], 100)}*"
    return escape(p) if "@" in p else f"`{escape(p)}`"


def named_people(ps: list[str], mention: frozenset[str], names: dict[str, str]) -> str:
    return ", ".join(named(p, mention, names) for p in ps) or "nobody (no approvers configured)"


def duration(seconds: float | None) -> str:
    """A span as people read it (45s, 12m, 1m 30s, 3h 05m, 2d 4h); – when unknown."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f" {s % 60:02d}s" if s < 600 and s % 60 else "")
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def date(dt: datetime) -> str:
    """A date Slack shows in each reader's own time zone."""
    return f"<!date^{clock.epoch(dt)}^{{date_short_pretty}} {{time}}|{clock.iso(dt)}>"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(clip(text, SECTION_TEXT))}


_INVISIBLE = re.compile(r"[\u061c\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def agent_plain(text: Any, limit: int, one_line: bool = True) -> dict[str, Any]:
    """An agent's words as plain text: no bold, no emoji shortcodes, no links, no mentions, no bidi
    overrides, and (one_line) no line breaks, so it can never draw a line that looks like the bot's
    own status. The bot's status lives in mrkdwn blocks the agent cannot write."""
    clean = _INVISIBLE.sub("", str(text))
    if one_line:
        clean = " ".join(clean.split())
    # Escaped as in mrkdwn too: Slack decodes the three entities in every text, and raw < > & never leave us.
    return {"type": "plain_text", "text": safe(clean, limit), "emoji": False}


def _agent_section(text: Any, limit: int = SECTION_TEXT, one_line: bool = True) -> dict[str, Any]:
    return {"type": "section", "text": agent_plain(text, limit, one_line)}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(clip(t, CONTEXT_TEXT)) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, BUTTON_TEXT), "emoji": True},
        "action_id": action_id,
        "value": value[:BUTTON_VALUE],
    }
    if style:
        b["style"] = style
    return b


class ButtonValue(BaseModel):
    """What a decision button carries (its value): the escalation it acts on."""

    e: str


def button_value(esc_id: str) -> str:
    return ButtonValue(e=esc_id).model_dump_json()


def _fit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    # Keep the head and the closing status/actions, which carry the decision.
    return blocks[: MAX_BLOCKS - 3] + [_context("… more details in the change log")] + blocks[-2:]


def _message(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": clip(text, FALLBACK_TEXT), "blocks": _fit(blocks)}


# -- the escalation's three surfaces ----------------------------------------------------------------


def _status_line(card: Card) -> str:
    emoji, label = STATUS_LABEL.get(card.status, (":grey_question:", card.status))
    line = f"{emoji} *{label}*"
    if card.status in ("approved", "rejected") and card.decided_by:
        line += f" by {person(card.decided_by)}"
    if card.status == "acknowledged" and card.acknowledged_by:
        line += f" by {person(card.acknowledged_by)}"
    if card.decided_at and not card.is_open:
        line += f" · {date(card.decided_at)}"
    if card.status == "approved" and len(card.approvals) > 1:
        line += " · approvals: " + ", ".join(person(a) for a in card.approvals)
    if card.reason and card.status in ("rejected",):
        line += f"\n*Reason:* {escape(card.reason)}"
    return line


def _waiting_line(card: Card) -> str:
    if not card.needs_decision:
        return f"Acknowledge to let the agent know someone is on it. Expires {date(card.expires_at)}."
    q = card.quorum
    if card.tier >= 4 and q is not None:
        got = ", ".join(f"approved by {person(a)}" for a in card.approvals) or "no approvals yet"
        need = [] if q.compliance_ok else [
            "waiting for compliance (" + named_people(card.compliance, card.mention, card.names) + ")"]
        return "; ".join([f"*{q.approvals} of {q.required}*: {got}", *need]) + f". Expires {date(card.expires_at)}."
    ack = f" · {person(card.acknowledged_by)} is on it" if card.acknowledged_by else ""
    approvers = named_people(card.approvers, card.mention, card.names)
    return f"Approvers: {approvers}{ack}. Expires {date(card.expires_at)}."


def parent_message(card: Card) -> dict[str, Any]:
    """The channel message: state at a glance."""
    emoji, label = STATUS_LABEL.get(card.status, ("", card.status))
    head = f"*{escape(card.process_name)}* · Tier {card.tier} · {_status_line(card)}"
    blocks = [
        _section(head),
        _agent_section(card.summary, 1500),
        {"type": "context", "elements": [
            agent_plain(f"Agent: {card.agent_name}", 200), agent_plain(f"Model: {card.model or 'unspecified'}", 200),
            agent_plain(f"Reason: {card.reason_code or 'unspecified'}", 200), _mrkdwn(f"`{card.id}`")]},
    ]
    text = f"{label}: {escape(card.process_name)}: {safe(card.summary, 500)}"
    return _message(text, blocks)


def _one_line(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(_INVISIBLE.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kv_field(label: str, data: dict[str, Any]) -> dict[str, Any]:
    """Inputs or params: the agent's keys and values, one per line, as plain text."""
    lines = [f"• {_one_line(k, 100)}: {_one_line(v, 500)}" for k, v in data.items()] or ["none"]
    return agent_plain(label + "\n" + "\n".join(lines), FIELD_TEXT, one_line=False)


def _check_line(c: dict[str, Any]) -> str:
    mark = {True: "✅", False: "❌"}.get(c.get("passed"), "❔")
    detail = f" — {_one_line(c['detail'], 300)}" if c.get("detail") else ""
    return f"{mark} {_one_line(c['name'], 200)}{detail}"


def thread_message(card: Card) -> dict[str, Any]:
    """The decision card in the thread: details, then the buttons while it is open."""
    # What the agent wrote is plain text under labels the bot writes (see agent_plain).
    blocks: list[dict[str, Any]] = [_section("*Action*"), _agent_section(card.summary, 2800)]
    if card.message:
        blocks += [_section("*Agent says*"), _agent_section(card.message, 2800, one_line=False)]
    blocks.append({
        "type": "section",
        "fields": [
            _kv_field("Inputs", card.inputs),
            agent_plain("Tools\n" + (", ".join(card.tools) or "none"), FIELD_TEXT, one_line=False),
            _kv_field("Params", card.params),
        ],
    })
    if card.policy_checks:
        lines = "\n".join(_check_line(c) for c in card.policy_checks)
        blocks += [_section("*Policy checks*"), _agent_section(lines, 2900, one_line=False)]
    if card.rollback_plan is not None:
        plan = card.rollback_plan if isinstance(card.rollback_plan, str) else json.dumps(card.rollback_plan)
        blocks += [_section("*Rollback plan*"), _agent_section(plan, 2800, one_line=False)]
    blocks.append(_context(
        f"`{card.id}` · action hash `{card.action_hash[:12]}`"
        + (f" · trace `{safe(card.trace_id, 100)}`" if card.trace_id else "")
    ))
    blocks.append({"type": "divider"})
    if card.is_open and card.process_paused:
        st = card.slo.state
        blocks.append(_section(f":double_vertical_bar: *The process is paused* by "
                               f"{named(st.by or '', frozenset(), card.names)}: "
                               f"{safe(st.reason or 'no reason given', 500)}. This escalation can still be decided."))
    if card.is_open:
        blocks.append(_section(_waiting_line(card)))
        value = button_value(card.id)
        if card.needs_decision:
            buttons = [
                button("Approve", ACTION_APPROVE, value, "primary"),
                button("Reject", ACTION_REJECT, value, "danger"),
            ]
            if not card.acknowledged_by:
                buttons.append(button("I'm on it", ACTION_ACK, value))
        else:
            buttons = [button("Acknowledge", ACTION_ACK, value, "primary")]
        blocks.append({"type": "actions", "block_id": f"decide:{card.id}", "elements": buttons})
    else:
        blocks.append(_section(_status_line(card)))
    if card.slo is not None:
        from bot.surfaces import slo  # it renders with this module's helpers

        blocks.append(_context(slo.footer_text(card.slo, lambda p: named(p, frozenset(), card.names), CONTEXT_TEXT)))
    text = f"{STATUS_LABEL.get(card.status, ('', card.status))[1]}: {safe(card.summary, 500)}"
    return _message(text, blocks)


def dm_message(card: Card, permalink: str | None, repage: bool = False) -> dict[str, Any]:
    """The page to a person: what, how urgent, and one tap to the thread."""
    what = "decide on" if card.needs_decision else "acknowledge"
    lead = ":rotating_light: *Re-page:* nobody has picked this up yet. " if repage else ":rotating_light: "
    link = f"<{permalink}|Open the thread to {what} it>" if permalink else "Open the process channel thread."
    blocks = [
        _section(f"{lead}*{escape(card.process_name)}* (tier {card.tier}) needs you to {what}:"),
        _agent_section(card.summary, 1500),
        _section(_status_line(card) if not card.is_open else link),
        _context(f"`{card.id}` · expires {date(card.expires_at)}"),
    ]
    return _message(f"Escalation for {escape(card.process_name)}: {safe(card.summary, 500)}", blocks)


def delivery_failed_note(channel: str, what: str, reason: str) -> str:
    return (f":warning: I could not {clip(what, 1500)} (<#{channel}>): {escape(reason)}. You are the "
            "accountable owner, so it comes to you. Check that the channel exists and that I am invited to it.")


def fallback_message(card: Card, note: str | None) -> dict[str, Any]:
    """The decision card, delivered to the accountable owner when the channel cannot take it."""
    msg = thread_message(card)
    head = [_section(note)] if note else []
    head.append(_section(f"*{escape(card.process_name)}* (tier {card.tier}) · {_status_line(card)}"))
    return {"text": msg["text"], "blocks": _fit(head + msg["blocks"])}


def repage_note(notify: list[str], level: int, waited_min: int) -> dict[str, Any]:
    """The thread note when paging moves on to the next level."""
    text = (f":rotating_light: Nobody has acknowledged after {waited_min} min: paging level {level + 1}, "
            f"{people(notify)}.")
    return _message(text, [_section(text)])


def pause_note(process_name: str, status: str, by: str, reason: str | None, cancelled: int = 0) -> dict[str, Any]:
    if status == "paused":
        text = (f":double_vertical_bar: *{escape(process_name)}* is paused by {person(by)}: "
                f"{safe(reason or 'no reason given', 1000)}. New agent signals and recorded actions are refused "
                "until it is resumed.")
        if cancelled:
            text += f" {cancelled} open escalation(s) cancelled."
    else:
        text = f":arrow_forward: *{escape(process_name)}* is resumed by {person(by)}. Agent signals are accepted again."
    return _message(text, [_section(text)])


def model_change_note(process_name: str, before: str, after: str, reported_by: str) -> dict[str, Any]:
    """The channel note when a process's agents start reporting another model (agent text: escaped)."""
    text = (f":arrows_counterclockwise: *{escape(process_name)}*: the agent now reports model "
            f"`{safe(after, 200)}` (was `{safe(before, 200)}`; first reported by {safe(reported_by, 200)}). "
            "Vendor updates change behaviour: the digest and `/aop stats` compare the rates before and after.")
    return _message(text, [_section(text)])


# -- replies to one person ----------------------------------------------------------------------------


def not_allowed_text(deciders: list[str], acting: str = "decide on") -> str:
    return f"You can't {acting} this escalation. Only {people(deciders)} can."


def closed_text(status: str, decided_by: str | None, decided_at: datetime | None) -> str:
    who = f" by {person(decided_by)}" if decided_by else ""
    when = f" at {date(decided_at)}" if decided_at else ""
    return f"Already {status}{who}{when}; nothing changed."


class RejectModalMeta(BaseModel):
    """What the reject modal carries to its submission (private_metadata), like a button's value."""

    e: str  # escalation id
    c: str | None = None  # channel of the clicked message, for a private reply
    t: str | None = None  # its thread
    home: bool = False  # opened from App Home (re-publish it after)


def reject_modal(esc_id: str, summary: str, channel: str | None, message_ts: str | None,
                 from_home: bool = False) -> dict[str, Any]:
    meta = RejectModalMeta(e=esc_id, c=channel, t=message_ts, home=from_home).model_dump_json()
    return asking_modal(REJECT_MODAL, meta, "Reject escalation", "Reject", f"*Action:* {safe(summary, 2800)}",
                        REASON_BLOCK, REASON_INPUT, "Why? The agent and the change log get this.")


def asking_modal(callback_id: str, meta: str, title: str, submit: str, head: str, block_id: str, action_id: str,
                 label: str) -> dict[str, Any]:
    """A modal that shows what is at stake and asks one required text (1–2000 characters)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": meta[:PRIVATE_METADATA],
        "title": {"type": "plain_text", "text": title[:MODAL_TITLE]},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(head),
            {
                "type": "input",
                "block_id": block_id,
                "label": {"type": "plain_text", "text": label},
                "element": {"type": "plain_text_input", "action_id": action_id, "multiline": True,
                            "min_length": 1, "max_length": 2000},
            },
        ],
    }
