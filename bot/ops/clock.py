"""The one clock. Everything that asks "what time is it" calls now(), so freezegun drives it all."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 UTC with a Z, seconds precision: the change-log timestamp format."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())
