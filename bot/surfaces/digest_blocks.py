"""Block Kit (and plain text) for the daily digest: pure functions of a bot.digest.Digest.

Summaries come from agents and are escaped; process names come from the registry and are escaped
too (a name is free text). Long portfolios are packed into as few sections as fit and cut to Slack's
block limit, most important parts first: summary, overdue, rate jumps, hygiene, then processes.
"""

from __future__ import annotations

from typing import Any

from bot.domain import qa
from bot.domain.scorecard import OverdueItem
from bot.surfaces.blocks import (
    CONTEXT_TEXT,
    FALLBACK_TEXT,
    HEADER_TEXT,
    MAX_BLOCKS,
    SECTION_TEXT,
    clip,
    date,
    duration,
    person,
    safe,
)
from bot.surfaces.digest import Digest, ProcessLine
from bot.surfaces.qa_blocks import error_rate_text, waiting_text

SPARK = "▁▂▃▄▅▆▇█"
LINE_LIMIT = 1000  # one item never takes a whole section


def sparkline(values: list[int]) -> str:
    """Zero is the lowest bar; any activity at least the second, scaled to the busiest day."""
    top = max(values, default=0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[0] if v <= 0 else SPARK[max(1, -(-v * (len(SPARK) - 1) // top))] for v in values)


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- shared wording ------------------------------------------------------------------------------------


def _numbers(ln: ProcessLine) -> str:
    c = ln.card
    parts = [_plural(c.actions, "action"), f"{_plural(c.escalations, 'escalation')} ({percent(c.escalation_rate)})",
             f"{c.approved} approved / {c.rejected} rejected / {c.expired} expired"]
    if c.acknowledged or c.cancelled:
        parts.append(f"{c.acknowledged} acknowledged / {c.cancelled} cancelled")
    if c.median_decision_s is not None:
        parts.append(f"decision median {duration(c.median_decision_s)}, p90 {duration(c.p90_decision_s)}")
    if c.attainment is not None:
        parts.append(f"{c.attainment:.1%} within the {duration(c.target_s)} target")
    if c.spend:
        parts.append(money_line(c))
    parts.append(_plural(c.repages, "re-page"))
    parts.append(f"{c.pending} pending, {c.overdue} overdue")
    return " · ".join(parts)


def _usd(value: float | None) -> str:
    return "–" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def money_line(c) -> str:
    """Spend and what it bought (a Scorecard)."""
    return (f"spend {_usd(c.spend)} ({_usd(c.cost_per_action)} per action, {_usd(c.cost_per_escalation)} per "
            f"escalation, {_usd(c.cost_per_approved_outcome)} per approved outcome)")


def _portfolio(d: Digest) -> str:
    t = d.totals
    total = t["actions"] + t["escalations"]
    rate = t["escalations"] / total if total else 0.0
    return (f"{_plural(len(d.lines), 'process')}: {_plural(t['actions'], 'agent action')} · "
            f"{_plural(t['escalations'], 'escalation')} ({percent(rate)}) · {t['approved']} approved / "
            f"{t['rejected']} rejected / {t['expired']} expired · {_plural(t['repages'], 're-page')} · "
            f"{t['pending']} pending, {t['overdue']} overdue")


def _quiet_line(d: Digest) -> str:
    return (f"Daily digest {d.local_date.isoformat()}: no agent activity in the last day across "
            f"{_plural(len(d.lines), 'process')}, and nothing is pending.")


def _jump_text(ln: ProcessLine) -> str:
    c = ln.card
    return (f"{percent(c.escalation_rate)} today vs {percent(ln.baseline_rate)} over the 7 days before "
            f"({_plural(c.escalations, 'escalation')})")


# -- Block Kit --------------------------------------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}}


def _packed(title: str, lines: list[str]) -> list[dict[str, Any]]:
    """A titled list as few sections as fit under the section text limit."""
    out, current = [], title
    for line in lines:
        line = clip(line, LINE_LIMIT)
        if len(current) + 1 + len(line) > SECTION_TEXT:
            out.append(_section(current))
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(_section(current))
    return out


def _overdue_line(process_name: str, it: OverdueItem, with_owner: bool = True) -> str:
    owner = f" · owner {person(it.owner)}" if with_owner and it.owner else ""
    return (f"• *{safe(process_name, 200)}*: {safe(_one_line(it.summary), 300)} · open {duration(it.age_s)}, "
            f"expires {date(it.expires_at)}{owner} · `{safe(it.id, 60)}`")


def _process_line(ln: ProcessLine) -> str:
    return f"• *{safe(ln.name, 200)}* `{safe(ln.process_id, 200)}` {sparkline(ln.daily)}\n    {_numbers(ln)}"


def digest_message(d: Digest) -> dict[str, Any]:
    """The channel post."""
    hygiene = [f"• *{safe(h.name, 200)}*: {safe(h.problem, 500)}" for h in d.hygiene]
    hygiene_blocks = _packed(":broom: *Ownership hygiene*", hygiene) if hygiene else []
    due = [f"• *{safe(h.name, 200)}*: {safe(h.problem, 500)}" for h in d.due]
    hygiene_blocks += _packed(":calendar: *Reviews and pilots due*", due) if due else []
    flags = [f"• *{safe(h.name, 200)}*: {safe(h.problem, 600)}" for h in d.flags]
    hygiene_blocks += _packed(":dart: *Targets, budgets and model changes*", flags) if flags else []
    qa_lines = [f"• {_qa_line(ln, d.generated_at, bold=True)}" for ln in d.qa_lines]
    hygiene_blocks += _packed(QA_TITLE, qa_lines) if qa_lines else []
    if d.quiet:
        quiet = [_section(_quiet_line(d)), *hygiene_blocks]
        if d.heads:
            quiet.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _heads_note(d)[3:]}]})
        return {"text": clip(_quiet_line(d), FALLBACK_TEXT), "blocks": quiet}

    head = clip(f"Daily digest · {d.local_date.isoformat()}", HEADER_TEXT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": True}},
        _section(f"*Portfolio* · {_portfolio(d)}"),
    ]
    if d.overdue:
        blocks += _packed(":alarm_clock: *Overdue* (open past half their time to expiry)",
                          [_overdue_line(ln.name, it) for ln, it in d.overdue])
    if d.jumps:
        blocks += _packed(":chart_with_upwards_trend: *Escalation rate jumps*",
                          [f"• *{safe(ln.name, 200)}*: {_jump_text(ln)}" for ln in d.jumps])
    blocks += hygiene_blocks
    quiet = [ln for ln in d.lines if ln.card.quiet]
    lines = [_process_line(ln) for ln in d.active]
    if quiet:
        lines.append("• No activity: " + ", ".join(safe(ln.name, 200) for ln in quiet))
    blocks += _packed("*Per process* (sparkline: escalations a day, last 7 days)", lines)
    footer = {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(
        f"{date(d.since)} – {date(d.until)} ({safe(d.timezone, 60)}) · overdue: open past half their time to "
        f"expiry · `aopbot digest --dry-run` prints it all{_heads_note(d)}", CONTEXT_TEXT)}]}
    if len(blocks) + 1 > MAX_BLOCKS:
        cut = len(blocks) - (MAX_BLOCKS - 2)
        blocks = blocks[: MAX_BLOCKS - 2] + [_section(f"… {_plural(cut, 'more section')} left out to fit Slack")]
    blocks.append(footer)
    return {"text": clip(f"Daily digest {d.local_date.isoformat()}: {_portfolio(d)}", FALLBACK_TEXT), "blocks": blocks}


QA_TITLE = f":mag: *Sampling QA* (error rate over the last {qa.WINDOW.days} days)"


def _qa_line(ln: qa.QaLine, now, bold: bool = False) -> str:
    """A process's QA: its error rate and interval, flagged past qa.max_error_rate, and the reviews
    overdue (unreviewed past the tier's target)."""
    name = f"*{safe(ln.name, 200)}*" if bold else f"{ln.name} ({ln.process_id})"
    flag = (f" :warning: *above qa.max_error_rate {percent(ln.max_error_rate)}*" if bold else
            f" ABOVE qa.max_error_rate {percent(ln.max_error_rate)}") if ln.flagged else ""
    return f"{name}: error rate {error_rate_text(ln.rate)}{flag} · {waiting_text(ln.waiting, now)}"


def _heads_note(d: Digest) -> str:
    if not d.heads:
        return ""
    return (f" · :link: change-log heads of {_plural(len(d.heads), 'chain')} published with this message "
            "(`aopbot changelog verify --from-slack` checks the log against them)")


def heads_reply(part: int, parts: int, count: int) -> dict[str, Any]:
    """A thread reply carrying one more part of the heads (their seq and hash ride in its metadata)."""
    text = f":link: Change-log heads, part {part} of {parts} ({_plural(count, 'chain')})"
    return {"text": text, "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]}


def owner_dm(local_date: str, items: list[tuple[str, OverdueItem]]) -> dict[str, Any]:
    """The DM to one owner: what is overdue on them. items are (process name, item)."""
    title = (f":alarm_clock: *{_plural(len(items), 'escalation')} overdue on you* (daily digest {local_date}). "
             "Each is past half its time to expiry:")
    blocks = _packed(title, [_overdue_line(name, it, with_owner=False) for name, it in items])
    if len(blocks) > MAX_BLOCKS:
        blocks = blocks[: MAX_BLOCKS - 1] + [_section("… and more; see the daily digest")]
    return {"text": clip(f"{_plural(len(items), 'escalation')} overdue on you", FALLBACK_TEXT), "blocks": blocks}


# -- plain text (aopbot digest --dry-run) -----------------------------------------------------------------


def digest_text(d: Digest) -> str:
    window = f"{d.since.isoformat()} – {d.until.isoformat()} ({d.timezone})"
    if d.quiet:
        out = [_quiet_line(d)]
    else:
        out = [f"Daily digest {d.local_date.isoformat()}  {window}", "", "Portfolio: " + _portfolio(d)]
        if d.overdue:
            out += ["", "Overdue (open past half their time to expiry):"]
            out += [f"  {it.id}  {ln.name}: {_one_line(it.summary)[:300]} · open {duration(it.age_s)} · "
                    f"owner {it.owner or 'nobody'}" for ln, it in d.overdue]
        if d.jumps:
            out += ["", "Escalation rate jumps:"] + [f"  {ln.name}: {_jump_text(ln)}" for ln in d.jumps]
    if d.hygiene:
        out += ["", "Ownership hygiene:"] + [f"  {h.name} ({h.process_id}): {h.problem}" for h in d.hygiene]
    if d.due:
        out += ["", "Reviews and pilots due:"] + [f"  {h.name} ({h.process_id}): {h.problem}" for h in d.due]
    if d.flags:
        out += ["", "Targets, budgets and model changes:"]
        out += [f"  {h.name} ({h.process_id}): {h.problem}" for h in d.flags]
    if d.qa_lines:
        out += ["", f"Sampling QA (error rate over the last {qa.WINDOW.days} days):"]
        out += [f"  {_qa_line(ln, d.generated_at)}" for ln in d.qa_lines]
    if not d.quiet:
        out += ["", "Per process (escalations a day, last 7 days):"]
        for ln in d.active:
            out.append(f"  {ln.name} ({ln.process_id}) {sparkline(ln.daily)}  {_numbers(ln)}")
        quiet = [ln.name for ln in d.lines if ln.card.quiet]
        if quiet:
            out.append("  No activity: " + ", ".join(quiet))
    return "\n".join(out) + "\n"
