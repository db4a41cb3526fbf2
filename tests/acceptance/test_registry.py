"""The process registry: validation with every error named, check/sync from the CLI, and the
running bot keeping the last good registry when a bad one arrives."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.ops.app import load_registry
from tests.helpers import BAD_REGISTRY as BAD
from tests.procs import aopbot

ROOT = Path(__file__).resolve().parents[2]



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


def test_a_snapshot_stored_by_the_previous_release_with_its_own_keys_stays_in_force(db, settings, registry_path):
    """Earlier releases kept unknown process keys (e.g. team:) and ignored them. Now the file with
    such a key is refused with a did-you-mean, and the bot keeps the stored registry in force."""
    from bot.domain.models import RegistrySnapshot
    from bot.domain.registry import RegistryError, load_registry_file
    from bot.ops import clock

    good = load_registry_file(registry_path).model_dump(mode="json")
    good["processes"][0]["team"] = "support"
    with db.transaction() as s:
        s.add(RegistrySnapshot(sha256="0" * 64, source="previous release", content=good, loaded_at=clock.now()))
    registry_path.write_text(registry_path.read_text().replace("    tier: 2\n", "    tier: 2\n    team: support\n", 1))
    with pytest.raises(RegistryError, match="team: unknown key"):
        load_registry_file(registry_path)
    reg = load_registry(settings, db)
    assert reg.get("refunds") is not None and reg.snapshot_id is not None
