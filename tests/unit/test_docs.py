"""The documentation stays true: every setting, registry field, /aop command and CLI verb the code has
is documented; the docs never point outside the repository; every relative link and anchor resolves;
and the code snippets the docs give users (change-log verification, callback signatures, the action
hash) agree with what the bot does."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import pkgutil
import re
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _find(attr: str, *candidates: str):
    """Where the code defines attr: the first candidate module that has it, else any module of the bot
    package that defines it. The package layout may move; what the docs describe must not."""
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue
            raise
        if hasattr(module, attr):
            return getattr(module, attr)
    import bot

    for info in pkgutil.walk_packages(bot.__path__, "bot."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # importing it would run the command line
            continue
        module = importlib.import_module(info.name)
        value = getattr(module, attr, None)
        if value is not None and getattr(value, "__module__", module.__name__) == module.__name__:
            return value
    raise LookupError(f"no {attr} in the bot package")


def settings_class():
    return _find("Settings", "bot.ops.config", "bot.config")


def registry_models() -> dict:
    names = ("Process", "Raci", "Approvals", "PolicyLevel", "RateLimit")
    return {n: _find(n, "bot.domain.registry", "bot.registry") for n in names}


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


def cli_parser() -> argparse.ArgumentParser:
    return _find("parser", "bot.ops.cli", "bot.cli")()


def test_every_setting_is_in_the_configuration_table():
    main, _, for_tests = text("configuration.md").partition("## For tests")
    documented = _table_names(main)
    settings = {name.upper() for name in settings_class().model_fields}
    assert settings, "Settings has no fields?"
    assert not settings - documented, f"settings missing from docs/configuration.md: {sorted(settings - documented)}"
    assert not documented - settings, f"documented but not read by Settings: {sorted(documented - settings)}"
    assert {"AOP_CHROMIUM", "AOP_UPDATE_SCREENSHOT", "TEST_DATABASE_URL"} <= _table_names(for_tests)


# -- 2. registry --------------------------------------------------------------------------------------


def test_every_registry_field_is_documented_and_in_the_example():
    m = registry_models()
    doc = text("registry.md")
    prefixes = {m["Process"]: "", m["Raci"]: "raci.", m["Approvals"]: "approvals.",
                m["PolicyLevel"]: "escalation_policy[].", m["RateLimit"]: "rate_limit."}
    missing = [f"{prefix}{field}" for model, prefix in prefixes.items() for field in model.model_fields
               if f"`{prefix}{field}`" not in doc]
    assert not missing, f"registry fields missing from docs/registry.md: {missing}"

    example = yaml.safe_load((ROOT / "aops.example.yml").read_text(encoding="utf-8"))
    used = {key for proc in example["processes"] for key in proc}
    absent = set(m["Process"].model_fields) - used
    assert not absent, f"process fields no process in aops.example.yml shows: {sorted(absent)}"


def test_the_example_registries_are_valid():
    load = _find("load_registry_file", "bot.domain.registry", "bot.registry")
    parse = _find("parse_registry", "bot.domain.registry", "bot.registry")
    assert load(ROOT / "aops.example.yml").processes
    documented = re.findall(r"```yaml\n(processes:.*?)```", text("registry.md"), flags=re.S)
    assert documented, "docs/registry.md has no complete example"
    assert len(parse(documented[0], "docs/registry.md").processes) == 3


# -- 3. /aop ------------------------------------------------------------------------------------------


def test_every_aop_command_is_in_the_slack_docs():
    doc = text("slack.md")
    commands = _find("COMMANDS", "bot.surfaces.commands", "bot.commands")
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
    subs = _subcommands(cli_parser())
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
    append = _find("append", "bot.domain.changelog", "bot.changelog")
    with db.transaction() as s:
        for i, (pid, decision, inputs) in enumerate([
            ("proc_a", "refunded $20", {"amount": 20.5, "note": "café ✓", "nested": {"z": 1, "a": [1, 2.0]}}),
            ("proc_b", "approved", {"big": 1e16, "empty": {}}),
            ("proc_a", "noop", {}),
        ]):
            append(s, {"process_id": pid, "timestamp": f"2026-01-0{i + 1}T10:00:00Z", "model": "m",
                                 "inputs": inputs, "tools_invoked": ["t"], "policy_checks": [],
                                 "decision": decision, "human_escalation": decision == "approved",
                                 "owner": "U0OWNER", "trace_id": None, "tier": 2})
    out = tmp_path / "changelog.ndjson"
    args = cli_parser().parse_args(["changelog", "export", "-o", str(out)])
    assert args.fn(args, settings_class()(database_url=db_url)) == 0
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
    sign_callback = _find("sign_callback", "bot.delivery.callbacks", "bot.delivery.slack_flows", "bot.slack_flows")
    verify = run_snippet(python_block(text("api.md"), "def verify_callback("))["verify_callback"]
    secret, body, ts = "whsec_test", b'{"id":"esc_1","status":"approved"}', str(int(time.time()))
    signature = sign_callback(secret, ts, body)
    assert verify(secret, ts, signature, body) is True
    assert verify(secret, ts, signature, body.replace(b"approved", b"rejected")) is False
    assert verify("whsec_other", ts, signature, body) is False
    old = str(int(time.time()) - 3600)
    assert verify(secret, old, sign_callback(secret, old, body), body) is False


def test_the_documented_action_hash_is_the_bots():
    bot_action_hash = _find("action_hash", "bot.domain.intake", "bot.domain.escalations", "bot.escalations")
    snippet = run_snippet(python_block(text("api.md"), "def action_hash("))["action_hash"]
    for action in ({"summary": "Refund $120 on ticket 123", "tools": ["billing.refund"], "params": {"amount": 120}},
                   {"summary": "Café ✓ 0.1", "params": {"x": 0.1, "y": {"b": 1, "a": 2}}},
                   {"summary": "no tools"}):
        full = {"summary": action["summary"], "tools": action.get("tools", []), "params": action.get("params", {})}
        assert snippet(action) == bot_action_hash(full)
    assert snippet({"summary": "x"}) != hashlib.sha256(b"x").hexdigest()
