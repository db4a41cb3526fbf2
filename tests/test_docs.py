"""The documentation stays true: every setting, registry field, /aop command and CLI verb the code has
is documented; the docs never point outside the repository; every relative link and anchor resolves;
and the code snippets the docs give users (change-log verification, callback signatures, the action
hash) agree with what the bot does."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _module(*names: str) -> ModuleType:
    """The first of these modules that exists (the package layout may move; the docs must not care)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not (e.name and name.startswith(e.name)):
                raise
    raise ModuleNotFoundError(f"none of {names}")


def config_module() -> ModuleType:
    return _module("bot.ops.config", "bot.config")


def registry_module() -> ModuleType:
    return _module("bot.domain.registry", "bot.registry")


def commands_module() -> ModuleType:
    return _module("bot.surfaces.commands", "bot.commands")


def cli_module() -> ModuleType:
    return _module("bot.ops.cli", "bot.cli")


def changelog_module() -> ModuleType:
    return _module("bot.domain.changelog", "bot.changelog")


def text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def python_block(markdown: str, containing: str) -> str:
    """The fenced ```python block of a page that contains the given text."""
    blocks = re.findall(r"```python\n(.*?)```", markdown, flags=re.S)
    found = [b for b in blocks if containing in b]
    assert found, f"no python block containing {containing!r}"
    return found[0]


def run_snippet(code: str) -> dict:
    namespace: dict = {"__name__": "docs_snippet"}
    exec(compile(code, "<docs snippet>", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


# -- 1. configuration ---------------------------------------------------------------------------------


def _table_names(markdown: str) -> set[str]:
    """The backticked names in the first cell of each table row."""
    names = set()
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def test_every_setting_is_in_the_configuration_table():
    main, _, for_tests = text("configuration.md").partition("## For tests")
    documented = _table_names(main)
    settings = {name.upper() for name in config_module().Settings.model_fields}
    assert settings, "Settings has no fields?"
    assert not settings - documented, f"settings missing from docs/configuration.md: {sorted(settings - documented)}"
    assert not documented - settings, f"documented but not read by Settings: {sorted(documented - settings)}"
    assert {"AOP_CHROMIUM", "AOP_UPDATE_SCREENSHOT", "TEST_DATABASE_URL"} <= _table_names(for_tests)


# -- 2. registry --------------------------------------------------------------------------------------


def test_every_registry_field_is_documented_and_in_the_example():
    reg = registry_module()
    doc = text("registry.md")
    prefixes = {reg.Process: "", reg.Raci: "raci.", reg.Approvals: "approvals.",
                reg.PolicyLevel: "escalation_policy[].", reg.RateLimit: "rate_limit."}
    missing = [f"{prefix}{field}" for model, prefix in prefixes.items() for field in model.model_fields
               if f"`{prefix}{field}`" not in doc]
    assert not missing, f"registry fields missing from docs/registry.md: {missing}"

    example = yaml.safe_load((ROOT / "aops.example.yml").read_text(encoding="utf-8"))
    used = {key for proc in example["processes"] for key in proc}
    absent = set(reg.Process.model_fields) - used
    assert not absent, f"process fields no process in aops.example.yml shows: {sorted(absent)}"


def test_the_example_registry_is_valid():
    reg = registry_module()
    assert reg.load_registry_file(ROOT / "aops.example.yml").processes


# -- 3. /aop ------------------------------------------------------------------------------------------


def test_every_aop_command_is_in_the_slack_docs():
    doc = text("slack.md")
    commands = commands_module().COMMANDS
    assert commands
    missing = [c.usage for c in commands.values() if f"`/aop {c.usage}`" not in doc]
    assert not missing, f"/aop commands missing from docs/slack.md: {missing}"


# -- 4. CLI -------------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_cli_verb_and_flag_is_in_the_operations_docs():
    doc = text("operations.md")
    subs = _subcommands(cli_module().parser())
    assert {"serve", "migrate"} <= set(subs)
    missing = []
    for name, sub in subs.items():
        if f"aopbot {name}" not in doc:
            missing.append(f"aopbot {name}")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            missing += [opt for opt in action.option_strings if opt.startswith("--") and f"`{opt}" not in doc
                        and f" {opt}" not in doc]
            if not action.option_strings and action.choices:
                missing += [f"aopbot {name} {choice}" for choice in action.choices
                            if f"aopbot {name} {choice}" not in doc]
    assert not missing, f"CLI missing from docs/operations.md: {missing}"


# -- 5. nothing outside the repository --------------------------------------------------------------


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.name)
def test_docs_name_nothing_outside_the_repository(page):
    body = page.read_text(encoding="utf-8")
    for forbidden in ("../shared", "SPEC.md"):
        assert forbidden not in body, f"{page.name} mentions {forbidden}"


# -- 6. links -----------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"#{1,6}\s+(.*)", line)
        if in_code or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    body = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(body):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT) or not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _slugs(dest.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_link_checker_can_fail(tmp_path):
    assert "check-sync-and-which-registry-is-in-force" in _slugs("## Check, sync, and which registry is in force")
    assert "get-apiv1escalationsid" in _slugs("## GET /api/v1/escalations/{id}")
    assert LINK.findall("see [x](nowhere.md#a) and [y](https://example.com)") == ["nowhere.md#a",
                                                                                   "https://example.com"]


# -- 7. the change-log checker in docs/changelog.md -----------------------------------------------------


def test_the_documented_changelog_checker_accepts_a_real_export_and_catches_an_edit(db, db_url, tmp_path,
                                                                                      capsys):
    changelog = changelog_module()
    with db.transaction() as s:
        for i, (pid, decision, inputs) in enumerate([
            ("proc_a", "refunded $20", {"amount": 20.5, "note": "café ✓", "nested": {"z": 1, "a": [1, 2.0]}}),
            ("proc_b", "approved", {"big": 1e16, "empty": {}}),
            ("proc_a", "noop", {}),
        ]):
            changelog.append(s, {"process_id": pid, "timestamp": f"2026-01-0{i + 1}T10:00:00Z", "model": "m",
                                 "inputs": inputs, "tools_invoked": ["t"], "policy_checks": [],
                                 "decision": decision, "human_escalation": decision == "approved",
                                 "owner": "U0OWNER", "trace_id": None, "tier": 2})
    cli = cli_module()
    out = tmp_path / "changelog.ndjson"
    args = cli.parser().parse_args(["changelog", "export", "-o", str(out)])
    assert args.fn(args, config_module().Settings(database_url=db_url)) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3

    snippet = run_snippet(python_block(text("changelog.md"), "def verify("))
    assert all(snippet["entry_hash"](json.loads(line)) == json.loads(line)["hash"] for line in lines)
    assert snippet["verify"](lines) is True
    edited = [lines[0].replace("refunded $20", "refunded $200"), *lines[1:]]
    assert snippet["verify"](edited) is False
    assert snippet["verify"]([lines[0], lines[2].replace('"seq": 2', '"seq": 3')]) is False
    assert "hash does not match" in capsys.readouterr().out


# -- 8. the snippets in docs/api.md ---------------------------------------------------------------------


def test_the_documented_callback_check_accepts_the_bots_signature():
    flows = _module("bot.delivery.slack_flows", "bot.slack_flows")
    verify = run_snippet(python_block(text("api.md"), "def verify_callback("))["verify_callback"]
    secret, body, ts = "whsec_test", b'{"id":"esc_1","status":"approved"}', str(int(time.time()))
    signature = flows.sign_callback(secret, ts, body)
    assert verify(secret, ts, signature, body) is True
    assert verify(secret, ts, signature, body.replace(b"approved", b"rejected")) is False
    assert verify("whsec_other", ts, signature, body) is False
    old = str(int(time.time()) - 3600)
    assert verify(secret, old, flows.sign_callback(secret, old, body), body) is False


def test_the_documented_action_hash_is_the_bots():
    intake = _module("bot.domain.intake", "bot.escalations")
    snippet = run_snippet(python_block(text("api.md"), "def action_hash("))["action_hash"]
    for action in ({"summary": "Refund $120 on ticket 123", "tools": ["billing.refund"], "params": {"amount": 120}},
                   {"summary": "Café ✓ 0.1", "params": {"x": 0.1, "y": {"b": 1, "a": 2}}},
                   {"summary": "no tools"}):
        full = {"summary": action["summary"], "tools": action.get("tools", []), "params": action.get("params", {})}
        assert snippet(action) == intake.action_hash(full)
    assert snippet({"summary": "x"}) != hashlib.sha256(b"x").hexdigest()
