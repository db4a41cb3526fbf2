"""Where a callback may go: https:// to a public address, never to us or the network behind us.

Checked twice: when the signal arrives (a refused URL is a 422 naming callback_url) and again when
the callback is delivered, after resolving the host, since a public name can point at 127.0.0.1 or
169.254.169.254. Hosts listed in AOP_CALLBACK_ALLOW (local development) may use http:// and any
address. Credentials in the URL are refused everywhere; redirects are never followed (delivery).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

# 2130706433, 0x7f000001, 0177.1, 127.1: IPv4 in the legacy forms inet_aton still accepts.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _literal(host: str) -> Address | None:
    """The address a host names by itself (an IP in any form), or None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _public(addr: Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def refusal(url: str, allow: frozenset[str]) -> str | None:
    """Why this callback_url may not be used, or None (checked when the signal arrives)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if not host:
        return "has no host"
    try:
        host.encode("idna")  # an empty or over-long label: no resolver will take it
    except UnicodeError:
        return "has a host name that is not valid"
    allowed = host in allow
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed):
        return "must be https:// (http:// only for hosts listed in AOP_CALLBACK_ALLOW)"
    addr = _literal(host)
    if addr is not None and not allowed and not _public(addr):
        return f"points at a non-public address ({addr}); list the host in AOP_CALLBACK_ALLOW to allow it"
    return None


def delivery_refusal(url: str, allow: frozenset[str]) -> str | None:
    """Why this callback may not be sent now: the signal-time checks again, and every address the
    host resolves to must be public (unless the host is allowed)."""
    reason = refusal(url, allow)
    if reason:
        return reason
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in allow:
        return None
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError):
        return f"{host} is not a valid host name"
    except OSError:
        return None  # unresolvable now: the request fails and is retried, nothing is sent anywhere
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _public(addr):
            return f"{host} resolves to a non-public address ({addr})"
    return None
