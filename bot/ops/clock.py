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


def parse_iso(value: str) -> datetime:
    """ISO 8601 with a zone, as UTC; ValueError for anything else (including times UTC cannot hold)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("no time zone")
    try:
        return dt.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("out of range") from e
