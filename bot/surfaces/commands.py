"""/aop subcommands as a registry of (name, usage, summary, function); help is generated from it.

Each command returns a message body (text + blocks) for the person who asked. Nothing here imports
Slack: people are resolved and permalinks built through the services handed in.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.domain import changelog, governance, model_changes, processes, qa
from bot.domain.processes import OpenItem
from bot.domain.registry import Process
from bot.ops import clock
from bot.surfaces import blocks, qa_blocks, slo
from bot.surfaces.digest_blocks import money_line

LIST_LIMIT = 30
ITEM_LIMIT = 15


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Any, str, list[str]], dict[str, Any]]
    min_args: int = 0


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, summary: str, min_args: int = 0):
    def wrap(fn):
        COMMANDS[name] = Command(name, usage, summary, fn, min_args)
        return fn
    return wrap


def _chunks(text: str) -> list[str]:
    """Split at line ends into pieces that fit a section, so no link or mention is cut in half."""
    out: list[str] = []
    for line in text.split("\n"):
        if out and len(out[-1]) + 1 + len(line) <= blocks.SECTION_TEXT:
            out[-1] += "\n" + line
        else:
            out.append(blocks.clip(line, blocks.SECTION_TEXT))
    return out


def reply(*sections: str) -> dict[str, Any]:
    parts = [s for s in sections if s]
    body = [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for s in parts for chunk in _chunks(s)][: blocks.MAX_BLOCKS]
    return {"text": blocks.clip(parts[0] if parts else "", blocks.FALLBACK_TEXT), "blocks": body}


def help_text() -> str:
    lines = ["*aopbot* — who owns which agent process, and what is waiting on whom."]
    lines += [f"• `/aop {c.usage}` — {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines)


def did_you_mean(word: str, options: list[str]) -> str | None:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None


class Answer(Exception):
    """Stop a command here and answer the person with this (a usage line, an unknown name)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.message = reply(text)


def _process(svc, pid: str) -> Process:
    """The process, or an Answer saying it does not exist (with a guess)."""
    proc = svc.registry.get(pid)
    if proc is not None:
        return proc
    guess = did_you_mean(pid, list(svc.registry.by_id))
    hint = f" Did you mean `{guess}`?" if guess else " `/aop list` shows them all."
    raise Answer(f"No process `{blocks.safe(pid, 200)}`.{hint}")


def _resolver(svc):
    return getattr(getattr(svc, "flows", None), "directory", None) and svc.flows.directory.resolve


def _age(item: OpenItem) -> str:
    return blocks.duration((clock.now() - item.created_at).total_seconds())


def _item_line(svc, item: OpenItem) -> str:
    link = svc.flows.permalink(item.channel, item.message_ts) if item.message_ts else None
    title = blocks.safe(item.summary, 150)
    title = f"<{link}|{title}>" if link else title
    state = "acknowledged, " if item.status == "acknowledged" else ""
    votes = f", {item.approvals} approval(s)" if item.approvals else ""
    return (f"• {title} — *{blocks.escape(item.process_name)}*, tier {item.tier}, {state}waiting {_age(item)}"
            f"{votes}; paged: {blocks.people(item.paged)}")


def _items_section(svc, items: list[OpenItem], total: int, empty: str) -> str:
    if not items:
        return empty
    lines = [_item_line(svc, i) for i in items]
    if total > len(items):
        lines.append(f"… and {total - len(items)} more")
    return "\n".join(lines)


@command("help", "help", "this list")
def _help(svc, user: str, args: list[str]) -> dict[str, Any]:
    return reply(help_text())


@command("who", "who <process>", "who gets paged, what breaks, how to roll back; RACI + escalation owner",
         min_args=1)
def _who(svc, user: str, args: list[str]) -> dict[str, Any]:
    proc = _process(svc, args[0])
    with svc.db.transaction() as s:
        state = processes.state_of(s, proc.id)
        open_n = processes.open_count(s, proc.id)
        card = governance.slo_card(s, governance.Answers.of(proc), proc=proc, with_scorecard=True)
    r = proc.raci
    status = "active" if state.status == "active" else (
        f"*paused* by {blocks.person(state.by)} {blocks.date(state.at)}: {blocks.safe(state.reason or '', 500)}")
    if proc.retired:
        status = "*retired* (signals and records get 410)"
    lines = [
        f"*{blocks.escape(proc.name)}* (`{blocks.escape(proc.id)}`) · tier {proc.tier} · <#{proc.channel}> · {status}",
        f"*Escalation owner (E):* {blocks.people([r.escalation]) if r.escalation else ':warning: none'}",
        f"*Accountable (A):* {blocks.people([r.accountable]) if r.accountable else ':warning: none'}",
        f"*Responsible (R):* {blocks.people(r.responsible) if r.responsible else 'none'}",
        f"*Consulted (C):* {blocks.people(r.consulted) if r.consulted else 'none'}",
        f"*Informed (I):* {blocks.people(r.informed) if r.informed else 'none'}",
        "*Approvers:* " + (blocks.people(proc.approver_people()) if proc.tier >= 2
                           else f"no decision at tier {proc.tier}"),
        f"*Open escalations:* {open_n}" + (" — `/aop pending " + blocks.escape(proc.id) + "`" if open_n else ""),
    ]
    return reply(slo.card_text(card, blocks.person), "\n".join(lines))


@command("list", "list [tier N]", "every process, optionally of one tier")
def _list(svc, user: str, args: list[str]) -> dict[str, Any]:
    procs = svc.registry.all()
    if args:
        words = [a.lower() for a in args]
        tier_arg = words[1] if words[0] == "tier" and len(words) > 1 else words[0].removeprefix("tier")
        if not tier_arg.isdigit() or int(tier_arg) > 4:
            return reply("Usage: `/aop list [tier N]` with N from 0 to 4")
        procs = [p for p in procs if p.tier == int(tier_arg)]
    if not procs:
        return reply("No processes" + (" of that tier." if args else " in the registry."))
    procs.sort(key=lambda p: p.id)
    lines = [f"• `{blocks.escape(p.id)}` — {blocks.escape(p.name)} (tier {p.tier}, "
             f"E: {blocks.people([p.raci.escalation]) if p.raci.escalation else 'none'})" for p in procs[:LIST_LIMIT]]
    if len(procs) > LIST_LIMIT:
        lines.append(f"… and {len(procs) - LIST_LIMIT} more (`/aop list tier N` narrows it)")
    return reply(f"*{len(procs)} process(es)*", "\n".join(lines))


@command("mine", "mine", "your processes and the escalations waiting on you")
def _mine(svc, user: str, args: list[str]) -> dict[str, Any]:
    owned = processes.processes_of(svc.registry, user, _resolver(svc))
    with svc.db.transaction() as s:
        waiting, total = processes.waiting_on(s, user, ITEM_LIMIT)
    procs = "\n".join(f"• `{blocks.escape(p.id)}` — {blocks.escape(p.name)}: {', '.join(roles)}"
                      for p, roles in owned[:LIST_LIMIT]) or "You hold no role in any process."
    return reply(f"*Waiting on you ({total})*\n" + _items_section(svc, waiting, total, "Nothing. :tada:"),
                 f"*Your processes ({len(owned)})*\n{procs}")


@command("pending", "pending [process]", "open escalations: age, tier, who is paged")
def _pending(svc, user: str, args: list[str]) -> dict[str, Any]:
    pid = None
    if args:
        proc = _process(svc, args[0])
        pid = proc.id
    with svc.db.transaction() as s:
        items, total = processes.open_items(s, pid, ITEM_LIMIT)
    where = f" in `{blocks.escape(pid)}`" if pid else ""
    return reply(f"*{total} open escalation(s){where}*",
                 _items_section(svc, items, total, "Nothing is waiting. :tada:"))


def _count_arg(args: list[str], default: int, most: int, usage: str) -> int:
    if len(args) < 2:
        return default
    if not args[1].isdigit() or not 1 <= int(args[1]) <= most:
        raise Answer(f"Usage: `/aop {usage}` (a number from 1 to {most})")
    return int(args[1])


@command("log", "log <process> [N]", "the last N change-log entries of a process", min_args=1)
def _log(svc, user: str, args: list[str]) -> dict[str, Any]:
    proc = _process(svc, args[0])
    n = _count_arg(args, 10, 50, "log <process> [N]")
    with svc.db.transaction() as s:
        entries = changelog.latest(s, proc.id, n)
    if not entries:
        return reply(f"No change-log entries for `{blocks.escape(proc.id)}` yet.")
    lines = []
    for e in entries:
        who = f" by {blocks.person(e['decided_by'])}" if e.get("decided_by") else ""
        what = e.get("action_summary") or ", ".join(e.get("tools_invoked", [])) or e.get("reason") or ""
        kind = e.get("kind") or ("escalation" if e.get("human_escalation") else "agent action")
        lines.append(f"• `{e['seq']}` {e['timestamp']} · {kind} · *{blocks.safe(e['decision'], 100)}*{who}"
                     f" — {blocks.safe(what, 200)}")
    return reply(f"*Last {len(entries)} change-log entries of {blocks.escape(proc.name)}*", "\n".join(lines))


@command("stats", "stats <process> [days]", "volume, escalation rate, outcomes, time to decision, QA error rate",
         min_args=1)
def _stats(svc, user: str, args: list[str]) -> dict[str, Any]:
    proc = _process(svc, args[0])
    days = _count_arg(args, 7, 365, "stats <process> [days]")
    from bot.domain.scorecard import scorecard

    until = clock.now()
    since = until - timedelta(days=days)
    with svc.db.transaction() as s:
        card = scorecard(s, proc.id, since, until, targets={proc.id: proc.approvals.target})
        shifts = model_changes.shifts(s, [proc.id], since, until)
        errors = qa.error_rates(s, [proc.id], since, until)[proc.id]
        waiting = qa.waiting(s, [proc.id], until)[proc.id]
    lines = [stats_text(card)] + [":arrows_counterclockwise: " + blocks.escape(model_changes.describe(sh))
                                  for sh in shifts]
    return reply(f"*{blocks.escape(proc.name)} — last {days} day(s)*", "\n".join(lines),
                 qa_blocks.stats_line(proc.qa_sample_rate(), errors, waiting, proc.qa_max_error_rate(), until))


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def stats_text(card) -> str:
    target = (f" · *{card.attainment:.1%}* within the {blocks.duration(card.target_s)} target "
              f"({card.within_target} of {card.target_total})" if card.attainment is not None else "")
    cycle = (f"\nCycle time (agent start → outcome): median *{blocks.duration(card.median_cycle_s)}*, "
             f"p90 *{blocks.duration(card.p90_cycle_s)}*" if card.median_cycle_s is not None else "")
    return "\n".join([
        f"Agent actions: *{card.actions}* · escalations: *{card.escalations}* · "
        f"escalation rate: *{card.escalation_rate:.0%}*",
        f"Approved {card.approved} · rejected {card.rejected} · expired {card.expired} · "
        f"acknowledged {card.acknowledged}",
        f"Time to decision: median *{blocks.duration(card.median_decision_s)}*, "
        f"p90 *{blocks.duration(card.p90_decision_s)}*{target}{cycle}",
        _first_upper(money_line(card) if card.spend else "spend: none reported (agents send `cost_usd`)"),
        f"Re-pages: {card.repages} · open now: {card.pending} · overdue: {card.overdue}",
    ])


CANCEL_OPEN = "--cancel-open"


@command("pause", f"pause <process> <reason> [{CANCEL_OPEN}]",
         "stop a process's agent signals and records (accountable/escalation owner)", min_args=2)
def _pause(svc, user: str, args: list[str]) -> dict[str, Any]:
    cancel_open = CANCEL_OPEN in args[1:]
    reason = " ".join(a for a in args[1:] if a != CANCEL_OPEN)
    if not reason:
        return reply(f"Usage: `/aop pause <process> <reason> [{CANCEL_OPEN}]`: say why, for the agent and the log")
    return _switch(svc, user, args[0], True, reason, cancel_open)


@command("resume", "resume <process>", "accept a paused process's signals again", min_args=1)
def _resume(svc, user: str, args: list[str]) -> dict[str, Any]:
    return _switch(svc, user, args[0], False, " ".join(args[1:]) or None)


def _owners_only(proc: Process, doing: str) -> dict[str, Any]:
    owners = [p for p in (proc.raci.accountable, proc.raci.escalation) if p]
    return reply(f"Only the accountable or escalation owner of `{blocks.escape(proc.id)}` "
                 f"({blocks.people(owners)}) can {doing} it. Nothing changed.")


def _switch(svc, user: str, pid: str, pause: bool, reason: str | None, cancel_open: bool = False) -> dict[str, Any]:
    proc = _process(svc, pid)
    try:
        _, cancelled = processes.set_paused(svc.db, proc, user, pause, reason, _resolver(svc), cancel_open)
    except processes.NotAllowed:
        return _owners_only(proc, "pause" if pause else "resume")
    svc.kick()
    if pause:
        open_note = (f" {cancelled} open escalation(s) cancelled." if cancel_open
                     else f" Open escalations stay decidable (`{CANCEL_OPEN}` cancels them).")
        return reply(f":double_vertical_bar: Paused `{blocks.escape(proc.id)}`: new agent signals and records get "
                     f"423 until `/aop resume {blocks.escape(proc.id)}`.{open_note}")
    return reply(f":arrow_forward: Resumed `{blocks.escape(proc.id)}`: agent signals are accepted again.")


@command("review", "review <process> <note>", "record a review of a process (accountable/escalation owner)",
         min_args=2)
def _review(svc, user: str, args: list[str]) -> dict[str, Any]:
    proc = _process(svc, args[0])
    note = " ".join(args[1:])
    try:
        at = governance.record_review(svc.db, proc, user, note, _resolver(svc))
    except processes.NotAllowed:
        return _owners_only(proc, "review")
    every = proc.review_every_seconds() // 86400
    return reply(f":white_check_mark: Review of `{blocks.escape(proc.id)}` recorded in its change log "
                 f"({blocks.date(at)}): {blocks.safe(note, 1000)}. Next one due in {every} days.")


def run(svc, user: str, text: str) -> dict[str, Any]:
    words = text.split()
    if not words:
        return reply(help_text())
    name, args = words[0].lower(), words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        guess = did_you_mean(name, list(COMMANDS))
        hint = f"Did you mean `/aop {guess}`?\n" if guess else ""
        return reply(f"I don't know `{blocks.safe(name, 50)}`. {hint}", help_text())
    if len(args) < cmd.min_args:
        return reply(f"Usage: `/aop {cmd.usage}`")
    try:
        return cmd.run(svc, user, args)
    except Answer as answer:
        return answer.message
