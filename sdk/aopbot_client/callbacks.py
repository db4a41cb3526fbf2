"""Checking a callback (docs/api.md#callbacks) before trusting it."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from aopbot_client.errors import InvalidSignature
from aopbot_client.models import Escalation

TIMESTAMP_HEADER = "X-Aopbot-Timestamp"
SIGNATURE_HEADER = "X-Aopbot-Signature"


def _header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """A header from any mapping (dict, httpx, Starlette, Flask, Django's META-less headers), any case."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_callback(body: bytes | str, headers: Mapping[str, str] | Any, secret: str, tolerance: int = 300, *,
                    now: float | None = None) -> Escalation:
    """The outcome a callback carries, once its signature and age check out.

    body: the raw request body, exactly as received (not re-serialised JSON). headers: the request's
    headers (any mapping; case does not matter). secret: the whole `whsec_…` string that
    `aopbot token create` printed. tolerance: how old (or how far ahead) the timestamp may be, in
    seconds; older is refused as a replay. Raises InvalidSignature for a missing, forged, altered or
    stale callback."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise InvalidSignature(f"no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header: not an aopbot callback")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a Unix time: {timestamp[:40]!r}") from None
    expected = "v1=" + hmac.new(secret.encode("utf-8"), timestamp.encode("ascii", "replace") + b"." + raw,
                                hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, part.strip()) for part in signature.split(",")):
        raise InvalidSignature("signature does not match: wrong secret, or the body was changed")
    age = (time.time() if now is None else now) - sent_at
    if abs(age) > tolerance:
        raise InvalidSignature(f"timestamp is {age:.0f} s off (tolerance {tolerance} s): refusing a replay")
    return Escalation.model_validate_json(raw)
