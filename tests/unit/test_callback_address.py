"""Where a callback may go (SSRF): https to public addresses; private ones only for allowed hosts."""

from __future__ import annotations

import pytest

from bot.delivery.callback_address import delivery_refusal, refusal

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize("url, why", [
    ("https://127.0.0.1/hook", "non-public"),
    ("https://169.254.169.254/latest/meta-data", "non-public"),
    ("https://10.0.0.1/hook", "non-public"),
    ("https://192.168.1.5/hook", "non-public"),
    ("https://[::1]/hook", "non-public"),
    ("https://[::ffff:127.0.0.1]/hook", "non-public"),
    ("https://224.0.0.1/hook", "non-public"),
    ("https://0x7f000001/hook", "non-public"),
    ("https://2130706433/hook", "non-public"),
    ("https://0177.1/hook", "non-public"),
    ("http://0x7f000001/hook", "https"),
    ("http://example.com/hook", "https"),
    ("https://user:pass@example.com/hook", "credentials"),
    ("https://example.com:notaport/hook", "not a valid URL"),
    ("ftp://example.com/hook", "https"),
    ("https://a..b.com/hook", "not valid"),  # no resolver takes it: refused, never retried for ever
    (f"https://{'a' * 64}.com/hook", "not valid"),
])
def test_refused_at_signal_time(url, why):
    assert why in (refusal(url, NONE) or "")


def test_public_https_and_allowed_hosts_pass():
    assert refusal("https://hooks.example.com/aopbot?x=1", NONE) is None
    assert refusal("https://8.8.8.8/hook", NONE) is None
    assert refusal("http://127.0.0.1:8080/hook", frozenset({"127.0.0.1"})) is None
    assert refusal("http://localhost:8080/hook", frozenset({"localhost"})) is None


def test_a_name_that_resolves_to_loopback_is_refused_at_delivery():
    assert refusal("https://localhost/hook", NONE) is None  # a name: nothing to say until it is resolved
    assert "resolves to a non-public address" in (delivery_refusal("https://localhost/hook", NONE) or "")
    assert delivery_refusal("http://localhost:1/hook", frozenset({"localhost"})) is None
