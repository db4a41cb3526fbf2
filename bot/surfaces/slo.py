"""The SLO card as text: "If this agent makes a bad call, who gets paged, what breaks, and how fast
can we roll back?" answered in its first sentence, then the owner, the scorecard line and what is
missing. Pure functions of governance.SloCard; `name` renders a registry person (a mention in a
reply to one person, a name that does not notify in a channel post).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.domain.governance import SloCard
from bot.surfaces.blocks import clip, date, duration, escape, safe

Name = Callable[[str], str]


def _paged(c: SloCard, name: Name) -> str:
    a = c.answers
    levels = a.levels or ([{"after": 0, "notify": [a.escalation]}] if a.escalation else [])
    if not levels:
        return ":warning: nobody is paged (no escalation owner)"
    first = ", ".join(name(p) for p in levels[0]["notify"])
    if a.escalation and a.escalation not in levels[0]["notify"]:
        first = f"{name(a.escalation)} (escalation owner) and {first}"
    then = [f"{', '.join(name(p) for p in lvl['notify'])} after {duration(lvl['after'])}" for lvl in levels[1:]]
    text = first + " is paged" + (" (then " + ", then ".join(then) + ")" if then else "")
    if a.repeat:
        text += f", the whole cycle {a.repeat + 1} times"
    return text


def _breaks(c: SloCard) -> str:
    a = c.answers
    if a.capability == "draft":
        acts = "only drafts (a person acts)"
    elif a.allowed_tools:
        acts = "acts with " + ", ".join(f"`{escape(t)}`" for t in a.allowed_tools)
    elif a.allowed_tools == []:
        acts = "acts with no tools"
    else:
        acts = "acts with any tool (no allowed_tools)"
    what = safe(a.blast_radius, 500) if a.blast_radius else ":warning: blast_radius not written"
    return f"what breaks is {what} (tier {a.tier}, {acts})"


def _rollback(c: SloCard) -> str:
    a = c.answers
    text = f"roll back with `/aop pause {escape(a.id)}`"
    text += f" and {safe(a.rollback, 1000)}" if a.rollback else " (:warning: no rollback written)"
    if c.median_page_to_pause_s is not None:
        text += (f"; median page to pause {duration(c.median_page_to_pause_s)} "
                 f"over the last 30 days ({c.pauses} pause{'s' if c.pauses != 1 else ''})")
    else:
        text += "; no page was paused in the last 30 days"
    return text


def sentence(c: SloCard, name: Name) -> str:
    """The one-sentence answer to the three questions."""
    return (f"If *{escape(c.answers.name)}* makes a bad call, {_paged(c, name)}; {_breaks(c)}; "
            f"{_rollback(c)}.")


def status_line(c: SloCard, name: Name) -> str | None:
    st = c.state
    if st.status == "paused":
        return (f":double_vertical_bar: *Paused* by {name(st.by or '')} {date(st.at) if st.at else ''}: "
                f"{safe(st.reason or 'no reason given', 500)}")
    if c.answers.stage == "retired":
        return ":no_entry: *Retired*: signals and change-log records get 410"
    return None


def owner_line(c: SloCard, name: Name) -> str:
    a = c.answers
    owner = name(a.accountable) if a.accountable else ":warning: none"
    parts = [f"*Owner (accountable):* {owner}"]
    if a.stage:
        parts.append(f"*Stage:* {escape(a.stage)}")
    if c.last_review:
        parts.append(f"*Last review:* {c.last_review.isoformat()}" + (" (:warning: due)" if c.review_due else ""))
    elif c.review_due:
        parts.append("*Review:* :warning: due (never reviewed)")
    return " · ".join(parts)


def scorecard_line(c: SloCard) -> str | None:
    s = c.scorecard
    if s is None:
        return None
    err = c.error_rate
    errors = ("error rate: no QA reviews yet" if err is None or not err.reviewed else
              f"error rate {err.rate:.1%} ({err.wrong} wrong of {err.reviewed} reviewed)")
    return (f"*Last 30 days:* {s.actions} agent action(s), {s.escalations} escalation(s), escalation rate "
            f"{s.escalation_rate:.0%}, {errors}, median time to decision "
            f"{duration(s.median_decision_s)}, boundary violations {c.violations}")


def missing_line(c: SloCard) -> str | None:
    if not c.missing:
        return None
    return ":warning: *Missing:* " + "; ".join(escape(m) for m in c.missing)


def card_text(c: SloCard, name: Name) -> str:
    """The whole card, a line each (the first is the sentence)."""
    lines = [sentence(c, name), status_line(c, name), owner_line(c, name), scorecard_line(c), missing_line(c)]
    return "\n".join(line for line in lines if line)


def footer_text(c: SloCard, name: Name, limit: int = 2000) -> str:
    """The end of an escalation thread: the sentence and what is missing, in one context element."""
    return clip("\n".join(line for line in (sentence(c, name), missing_line(c)) if line), limit)
