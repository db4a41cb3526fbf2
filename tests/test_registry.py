"""The process registry: validation with every error named, check/sync from the CLI, and the
running bot keeping the last good registry when a bad one arrives."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.registry import RegistryError, parse_duration, parse_registry
from bot.ops.app import load_registry
from tests.procs import aopbot

ROOT = Path(__file__).resolve().parent.parent

BAD = """
processes:
  - id: refunds
    name: Support refunds
    tier: 5
    channel: not-a-channel
    raci:
      escalation: nobody
    escalation_policy:
      - after: soon
        notify: [U0A]
  - id: kyc
    name: KYC
    tier: 4
    channel: C0KYC
    raci:
      escalation: U0B
  - id: refunds
    name: Dup
    tier: 1
    channel: C0DUP
    raci:
      escalation: U0C
"""


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


def test_cli_check_prints_errors_and_exits_nonzero(tmp_path):
    bad = tmp_path / "aops.yml"
    bad.write_text(BAD)
    result = aopbot("registry", "check", str(bad))
    assert result.returncode == 1
    assert "processes[0] (refunds): channel:" in result.stderr
    assert "processes[1] (kyc): approvals.compliance:" in result.stderr
    good = aopbot("registry", "check", str(ROOT / "aops.example.yml"))
    assert good.returncode == 0 and "ok (4 processes)" in good.stdout


def test_bad_registry_file_keeps_the_previous_one_in_force(settings, db, registry_path):
    first = load_registry(settings, db)
    assert first.get("refunds") is not None
    registry_path.write_text(BAD)
    kept = load_registry(settings, db)  # a restart with a broken file
    assert kept.snapshot_id == first.snapshot_id and kept.get("refunds").tier == 2

    result = aopbot("registry", "sync", str(registry_path), env={"DATABASE_URL": settings.database_url})
    assert result.returncode == 1 and "nothing changed" in result.stderr


def test_sync_reaches_a_running_bot(services, settings, registry_path):
    text = registry_path.read_text().replace("name: Support refunds", "name: Refunds (renamed)")
    registry_path.write_text(text)
    result = aopbot("registry", "sync", str(registry_path), env={"DATABASE_URL": settings.database_url})
    assert result.returncode == 0, result.stderr
    assert services.registry.get("refunds").name == "Support refunds"
    services.refresh_registry()  # what every replica's tick does
    assert services.registry.get("refunds").name == "Refunds (renamed)"
