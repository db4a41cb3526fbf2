"""Registry validation: every error named with its process and field; durations."""

from __future__ import annotations

import pytest

from bot.domain.registry import RegistryError, parse_duration, parse_registry
from tests.helpers import BAD_REGISTRY as BAD


def test_every_error_is_listed_with_process_and_field():
    with pytest.raises(RegistryError) as info:
        parse_registry(BAD, "aops.yml")
    errors = info.value.errors
    text = "\n".join(errors)
    assert "aops.yml: processes[0] (refunds): tier:" in text
    assert "aops.yml: processes[0] (refunds): channel: 'not-a-channel' is not a Slack channel ID" in text
    assert "aops.yml: processes[0] (refunds): raci.escalation: 'nobody' is not a Slack user ID" in text
    assert "aops.yml: processes[0] (refunds): escalation_policy.0.after: 'soon' is not a duration" in text
    assert "aops.yml: processes[1] (kyc): approvals.compliance: tier 4 needs at least one compliance approver" in text
    assert len(errors) >= 5


def test_duplicate_ids_are_refused():
    ok = BAD.replace("tier: 5", "tier: 2").replace("not-a-channel", "C0REFUNDS").replace("nobody", "U0X")
    ok = ok.replace("after: soon", "after: 0m").replace("escalation: U0B", "escalation: U0B\n    approvals: "
                                                            "{compliance: [S0COMP]}")
    with pytest.raises(RegistryError, match="duplicate process id 'refunds'"):
        parse_registry(ok)


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800),
                                               ("45s", 45), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15", "m15", "-1h"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("levels", [40, 3000])
def test_absurd_nesting_is_an_error_not_a_traceback(levels):
    text = ("processes:\n  - id: a\n    name: A\n    tier: 0\n    channel: C1\n    raci: {escalation: U1}\n"
            f"    x: {'[' * levels}{']' * levels}\n")
    with pytest.raises(RegistryError, match="nested"):
        parse_registry(text)
