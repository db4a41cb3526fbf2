"""The App Home tab, built from data: what is waiting on you (with working buttons) and your processes.
A pure function: the caller reads the database (processes.home_of) and publishes the view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.domain.processes import HomeData
from bot.surfaces import blocks, slo
from bot.surfaces.commands import LIST_LIMIT, _age

HOME_BLOCKS = 100  # a view may hold 100 blocks


def home_view(data: HomeData, permalink: Callable[[str | None, str | None], str | None]) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Waiting on you ({data.total})"}},
    ]
    if not data.waiting:
        body.append(_section("Nothing is waiting on you. :tada:"))
    for item in data.waiting:
        link = permalink(item.channel, item.message_ts) if item.message_ts else None
        title = blocks.safe(item.summary, 300)
        title = f"<{link}|{title}>" if link else title
        progress = f" · {item.approvals} approval(s) so far" if item.approvals else ""
        body.append(_section(f"*{blocks.escape(item.process_name)}* · tier {item.tier} · waiting {_age(item)}"
                             f"{progress}\n{title}"))
        value = blocks.button_value(item.id)
        body.append({"type": "actions", "block_id": f"home:{item.id}", "elements": [
            blocks.button("Approve", blocks.ACTION_APPROVE, value, "primary"),
            blocks.button("Reject", blocks.ACTION_REJECT, value, "danger"),
        ]})
    if data.total > len(data.waiting):
        body.append(_section(f"… and {data.total - len(data.waiting)} more: `/aop mine`"))
    body.append({"type": "divider"})
    body.append({"type": "header", "text": {"type": "plain_text", "text": f"Your processes ({len(data.owned)})"}})
    if not data.owned:
        body.append(_section("You hold no role in any process."))
    lines = []
    for p, roles in data.owned[:LIST_LIMIT]:
        head = f"*{blocks.escape(p.name)}* (`{blocks.escape(p.id)}`, tier {p.tier}): {', '.join(roles)}"
        card = data.slo.get(p.id)
        if card is None:  # past the cards shown in full: one line each
            lines.append("• " + head)
            continue
        body.append(_section("\n".join(t for t in (head, slo.sentence(card, blocks.person), slo.status_line(
            card, blocks.person), slo.missing_line(card)) if t)))
    if lines:
        body.append(_section("\n".join(lines)))
    return {"type": "home", "blocks": body[:HOME_BLOCKS]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": blocks.clip(text, blocks.SECTION_TEXT)}}
