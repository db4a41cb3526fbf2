"""manifest.yml is a valid Slack app manifest that asks for what the bot uses and no more."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"


@pytest.fixture(scope="module")
def manifest():
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_validates_against_slack_schema(manifest):
    if not SCHEMA.exists():
        pytest.skip("../shared/slack/manifest.schema.1.0.0.json is not beside this checkout")
    jsonschema.validate(manifest, json.loads(SCHEMA.read_text()))


def test_manifest_has_what_the_bot_uses(manifest):
    assert manifest["features"]["bot_user"]["display_name"]
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/aop"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "chat:write", "commands", "users:read", "users:read.email", "usergroups:read",
        "channels:history", "groups:history"}


def test_manifest_rejects_a_broken_copy(manifest):
    """The schema check can fail: an unknown top-level key is refused."""
    if not SCHEMA.exists():
        pytest.skip("schema not present")
    broken = dict(manifest, not_a_manifest_key=True)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))
