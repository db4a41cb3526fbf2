"""Structured JSON logs; the escalation and trace ids ride along when a line is about one."""

from __future__ import annotations

import json
import logging
import re
import sys

from bot.ops import clock

_EXTRA_FIELDS = ("escalation_id", "trace_id", "process_id")
# Slack tokens, Slack app tokens, agent tokens, callback secrets, and Bearer/signature values: whatever
# a library prints at DEBUG, none of them reaches the log.
_SECRETS = re.compile(r"(xox[a-z]-|xapp-|aop_|whsec_)[A-Za-z0-9._~+/=-]+|((?:Bearer|v0=|v1=)\s*)[A-Za-z0-9._~+/=-]{8,}")


def scrub(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        self.secrets = [x for x in (secrets or []) if x and len(x) >= 6]

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": clock.iso(clock.now()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = json.dumps(out, ensure_ascii=False)
        for secret in self.secrets:
            line = line.replace(secret, "[redacted]")
        return scrub(line)


def setup(level: str = "INFO", secrets: list[str] | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances" is a kick arriving mid-pass: expected, not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
