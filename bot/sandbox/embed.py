"""When the sandbox runs, and the settings the bot then runs with.

With no Slack credentials the bot serves Slack's Web API itself (under /sandbox/api/) with a bot
token and signing secret made up at start, and talks to it exactly as it talks to Slack. Anyone who
reaches the page can act as anyone, so off a loopback address it needs AOP_SANDBOX=1.
"""

from __future__ import annotations

import ipaddress
import secrets

from pydantic import SecretStr

from bot.ops.config import Settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wanted(settings: Settings) -> bool:
    """On by default without Slack credentials on a loopback host; AOP_SANDBOX=1/0 forces it."""
    if settings.bot_token or settings.signing_secret or settings.aop_sandbox is False:
        return False
    return bool(settings.aop_sandbox) or _is_loopback(settings.host)


def local_base(settings: Settings) -> str:
    return settings.local_url


def sandbox_settings(settings: Settings) -> Settings:
    """The settings with the sandbox standing in for Slack: its Web API, a fresh token and secret."""
    return settings.model_copy(update={
        "slack_bot_token": SecretStr("xoxb-sandbox-" + secrets.token_hex(12)),
        "slack_signing_secret": SecretStr(secrets.token_hex(24)),
        "slack_api_url": f"{local_base(settings)}/sandbox/api/",
        "slack_app_token": None,
    })
