"""What Slack refuses or must never show people: Block Kit limits and unescaped markup.

Pure checks over a message's JSON, used by the sandbox's Web API (and so by every test that posts
through it): a message the bot builds past a limit is refused here as Slack would refuse it.
"""

from __future__ import annotations

import re
from typing import Any

MASS_MENTION = re.compile(r"<!(channel|here|everyone)\b")
# Markup the bot itself may produce: user and group mentions of registry people, dates, links.
ALLOWED_MARKUP = re.compile(r"<(@[UW][A-Z0-9]+|#[CG][A-Z0-9]+|!subteam\^S[A-Z0-9]+|!date\^[^>]+|https?://[^>]+)>")

MAX_BLOCKS_MESSAGE = 50
MAX_BLOCKS_VIEW = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
MESSAGE_TEXT = 40000
MODAL_TITLE = 24


def texts(obj: Any, mrkdwn_only: bool = False) -> list[str]:
    """Every text string in a message or block tree (mrkdwn_only: not those of plain_text objects,
    which Slack never parses as markup)."""
    out: list[str] = []
    if isinstance(obj, dict):
        if mrkdwn_only and obj.get("type") == "plain_text":
            return out
        for k, v in obj.items():
            if k == "text" and isinstance(v, str):
                out.append(v)
            else:
                out += texts(v, mrkdwn_only)
    elif isinstance(obj, list):
        for v in obj:
            out += texts(v, mrkdwn_only)
    return out


def _button_problems(i: int, e: dict[str, Any]) -> list[str]:
    problems = []
    if len((e.get("text") or {}).get("text", "")) > BUTTON_TEXT:
        problems.append(f"block {i}: button text > {BUTTON_TEXT}")
    if len(e.get("value", "")) > BUTTON_VALUE:
        problems.append(f"block {i}: button value > {BUTTON_VALUE}")
    if len(e.get("action_id", "")) > 255:
        problems.append(f"block {i}: action_id > 255")
    return problems


def check_blocks(blocks: list[dict[str, Any]], max_blocks: int = MAX_BLOCKS_MESSAGE) -> list[str]:
    """What Slack would refuse as invalid_blocks."""
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks > {max_blocks}")
    for i, b in enumerate(blocks):
        t = b.get("type")
        if t == "section":
            text = (b.get("text") or {}).get("text", "")
            if len(text) > SECTION_TEXT:
                problems.append(f"block {i}: section text {len(text)} > {SECTION_TEXT}")
            fields = b.get("fields") or []
            if len(fields) > 10:
                problems.append(f"block {i}: {len(fields)} fields > 10")
            problems += [f"block {i}: field text {len(f.get('text', ''))} > {FIELD_TEXT}"
                         for f in fields if len(f.get("text", "")) > FIELD_TEXT]
            if not text and not fields:
                problems.append(f"block {i}: empty section")
            if (b.get("accessory") or {}).get("type") == "button":
                problems += _button_problems(i, b["accessory"])
        elif t == "header":
            if len(b["text"]["text"]) > HEADER_TEXT:
                problems.append(f"block {i}: header > {HEADER_TEXT}")
        elif t == "context":
            els = b.get("elements") or []
            if len(els) > 10:
                problems.append(f"block {i}: context with {len(els)} elements > 10")
            problems += [f"block {i}: context text > 2000" for e in els if len(e.get("text", "")) > 2000]
        elif t == "actions":
            els = b.get("elements") or []
            if len(els) > 25:
                problems.append(f"block {i}: {len(els)} actions > 25")
            for e in els:
                problems += _button_problems(i, e)
    return problems


def check_markup(strings: list[str]) -> list[str]:
    problems = []
    for t in strings:
        if MASS_MENTION.search(t):
            problems.append(f"mass mention in {t[:80]!r}")
        stripped = ALLOWED_MARKUP.sub("", t)
        if "<" in stripped or ">" in stripped:
            problems.append(f"unescaped < or > in {t[:120]!r}")
    return problems


def check_message(args: dict[str, Any], max_blocks: int = MAX_BLOCKS_MESSAGE) -> list[str]:
    problems = []
    if args.get("link_names") not in (None, False, "false", "0", 0):
        problems.append("link_names set")
    blocks = args.get("blocks") or []
    problems += check_blocks(blocks, max_blocks)
    problems += check_markup(texts(blocks) + ([args["text"]] if isinstance(args.get("text"), str) else []))
    if len(args.get("text") or "") > MESSAGE_TEXT:
        problems.append(f"text > {MESSAGE_TEXT}")
    return problems


def check_view(view: dict[str, Any]) -> list[str]:
    problems = check_blocks(view.get("blocks") or [], MAX_BLOCKS_VIEW)
    if len((view.get("title") or {}).get("text", "")) > MODAL_TITLE:
        problems.append(f"title > {MODAL_TITLE}")
    return problems
