"""Registry validation: every error named with its process and field; durations."""

from __future__ import annotations

import pytest
import yaml

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
    with pytest.raises(RegistryError, match=r"\(refunds\): id: duplicate process id \(also processes\[0\]\)"):
        parse_registry(ok)


def test_every_error_at_once_a_typo_with_its_did_you_mean():
    """A typo'd key, a duplicate id and three other errors: all five listed in one go."""
    text = """processes:
  - id: refunds
    name: Refunds
    tier: 2
    channel: C0REFUNDS
    raci: {escalation: U0ESC}
    allowed_tools: [billing.refund]
    capablity: act
  - id: refunds
    name: Refunds again
    tier: 2
    channel: C0OTHER
    raci: {escalation: U0ESC}
    capability: act
    allowed_tools: [billing.refund]
  - id: deploys
    name: Deploys
    tier: 7
    channel: "#deploys"
    raci: {escalation: bob}
    capability: act
"""
    with pytest.raises(RegistryError) as caught:
        parse_registry(text)
    assert caught.value.errors == [
        "aops.yml: processes[0] (refunds): capablity: unknown key (did you mean 'capability'?)",
        "aops.yml: processes[1] (refunds): id: duplicate process id (also processes[0]); each process needs its own id",
        "aops.yml: processes[2] (deploys): tier: Input should be 0, 1, 2, 3 or 4",
        "aops.yml: processes[2] (deploys): channel: '#deploys' is not a Slack channel ID (C… or G…)",
        "aops.yml: processes[2] (deploys): raci.escalation: 'bob' is not a Slack user ID (U…), user group ID (S…) or "
        "email",
    ]


def test_a_field_error_does_not_hide_the_governance_rules():
    with pytest.raises(RegistryError) as caught:
        parse_registry("processes:\n  - id: d\n    name: D\n    tier: 3\n    channel: C0D\n"
                       "    raci: {escalation: U0X}\n    blast_raduis: x\n")
    assert caught.value.errors == [
        "aops.yml: processes[0] (d): blast_raduis: unknown key (did you mean 'blast_radius'?)",
        "aops.yml: processes[0] (d): capability: required: add `capability: act` (its agent acts with its tools) "
        "or `capability: draft` (it only drafts, a person acts)",
        "aops.yml: processes[0] (d): allowed_tools: required at tier 3 for a process that acts; list the tools its "
        "agent may call (e.g. allowed_tools: [crm.update])",
        'aops.yml: processes[0] (d): rollback: required at tier 3; say in one line how to undo what its agent does '
        '(e.g. rollback: "Revert the PR; /aop pause d")',
    ]


def test_governance_rules_say_how_to_fix_each_missing_answer():
    """Tier 3 without rollback, tier 2 `act` without allowed_tools, a draft with tools, no capability:
    each an error with its fix; a review cadence defaults by tier."""
    def proc(pid: str, tier: int, extra: str) -> str:
        head = f"  - id: {pid}\n    name: {pid}\n    tier: {tier}\n    channel: C0A\n"
        return head + "    raci: {escalation: U0X}\n" + extra
    with pytest.raises(RegistryError) as caught:
        parse_registry("processes:\n" + proc("deploys", 3, "    capability: act\n    allowed_tools: [gh.pr]\n")
                       + proc("crm", 2, "    capability: act\n") + proc("drafts", 1, "    capability: draft\n"
                       "    allowed_tools: [mail.send]\n") + proc("old", 0, ""))
    assert caught.value.errors == [
        "aops.yml: processes[0] (deploys): rollback: required at tier 3; say in one line how to undo what its agent "
        'does (e.g. rollback: "Revert the PR; /aop pause deploys")',
        "aops.yml: processes[1] (crm): allowed_tools: required at tier 2 for a process that acts; list the tools its "
        "agent may call (e.g. allowed_tools: [crm.update])",
        "aops.yml: processes[2] (drafts): allowed_tools: a draft process uses no tools (a person acts on its drafts); "
        "remove allowed_tools or set capability: act",
        "aops.yml: processes[3] (old): capability: required: add `capability: act` (its agent acts with its tools) "
        "or `capability: draft` (it only drafts, a person acts)",
    ]
    ok = parse_registry("processes:\n" + proc("deploys", 3, "    capability: act\n    allowed_tools: [gh.pr]\n"
                                                            "    rollback: Revert the PR\n"))
    assert ok.processes[0].review_every_seconds() == 7 * 86400


def test_the_governance_fields_are_checked_and_a_nested_typo_is_named():
    base = "processes:\n  - id: a\n    name: A\n    tier: 2\n    channel: C0A\n    raci: {escalation: U0X}\n"
    ok = parse_registry(base + "    capability: act\n    allowed_tools: []\n    blast_radius: wrong refunds\n"
                        "    stage: pilot\n"
                        "    started: 2026-09-01\n    review: {every: 30d}\n    qa: {sample_rate: 0.05}\n"
                        "    budget: {daily_usd: 40}\n")
    assert ok.processes[0].review.every == 30 * 86400 and ok.processes[0].capability == "act"
    with pytest.raises(RegistryError) as caught:
        parse_registry(base + "    capability: maybe\n    qa: {sample_rte: 0.1}\n")
    text = "\n".join(caught.value.errors)
    assert "capability: Input should be 'draft' or 'act'" in text
    assert "qa.sample_rte: unknown key (did you mean 'sample_rate'?)" in text


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


def test_a_snapshot_stored_before_the_governance_rules_still_loads_as_acting():
    """A registry the previous release accepted (no capability, tier 3 without rollback, tier 2
    without allowed_tools) stays in force from the database; a file like it is refused."""
    from bot.domain.registry import STORED, RegistryFile

    old = {"processes": [{"id": "d", "name": "D", "tier": 3, "channel": "C0D", "raci": {"escalation": "U0X"}},
                         {"id": "r", "name": "R", "tier": 2, "channel": "C0R", "raci": {"escalation": "U0X"}}]}
    reg = RegistryFile.model_validate(old, context=STORED)
    assert [p.capability for p in reg.processes] == ["act", "act"]
    with pytest.raises(RegistryError):
        parse_registry(yaml.safe_dump(old))


def test_qa_defaults_by_tier_and_each_qa_error_names_its_field():
    """Sampling QA (issue 14): rates default by tier, reviewers to the escalation owner; at tier 2+ a
    rate of 0 is an error, as is a rate outside [0, 1], a rate given as text, or an unknown qa key."""
    def proc(pid: str, tier: int, qa: str = "") -> str:
        head = f"  - id: {pid}\n    name: {pid}\n    tier: {tier}\n    channel: C0A\n    raci: {{escalation: U0X}}\n"
        tail = "    approvals: {compliance: [U0C]}\n" if tier == 4 else ""
        return (head + "    capability: act\n    allowed_tools: []\n    rollback: undo it\n" + tail
                + (f"    qa: {qa}\n" if qa else ""))
    reg = parse_registry("processes:\n" + "".join(proc(f"t{t}", t) for t in range(5))
                         + proc("own", 2, "{sample_rate: 1, reviewers: S0QA, max_error_rate: 0.1}")
                         + proc("low", 1, "{sample_rate: 0}"))
    by_id = {p.id: p for p in reg.processes}
    assert [by_id[f"t{t}"].qa_sample_rate() for t in range(5)] == [0.0, 0.0, 0.05, 0.10, 0.20]
    assert by_id["t2"].qa_reviewers() == ["U0X"] and by_id["t2"].qa_max_error_rate() == 0.05
    own = by_id["own"]
    assert (own.qa_sample_rate(), own.qa_reviewers(), own.qa_max_error_rate()) == (1.0, ["S0QA"], 0.1)
    assert by_id["low"].qa_sample_rate() == 0.0  # tiers 0-1 may switch it off

    with pytest.raises(RegistryError) as caught:
        parse_registry("processes:\n" + proc("zero", 3, "{sample_rate: 0}") + proc("big", 2, "{sample_rate: 1.5}")
                       + proc("text", 2, '{sample_rate: "5%"}') + proc("typo", 2, "{sample_rte: 0.1}")
                       + proc("max", 2, "{max_error_rate: -0.5}"))
    assert caught.value.errors == [
        "aops.yml: processes[0] (zero): qa.sample_rate: tier 3 requires sampling QA, so the rate may not be 0; "
        "remove it for the tier's default (0.1) or set a share above 0",
        "aops.yml: processes[1] (big): qa.sample_rate: 1.5 is not a share from 0 to 1 (0.05 is 5%)",
        "aops.yml: processes[2] (text): qa.sample_rate: Input should be a valid number",
        "aops.yml: processes[3] (typo): qa.sample_rte: unknown key (did you mean 'sample_rate'?)",
        "aops.yml: processes[4] (max): qa.max_error_rate: -0.5 is not a share from 0 to 1 (0.05 is 5%)",
    ]


def test_a_stored_snapshot_with_a_zero_rate_at_tier_2_still_loads():
    """The previous release checked qa for form only: a tier-2 process it stored with rate 0 stays in
    force from the database (and samples nothing) until the file is fixed."""
    from bot.domain.registry import STORED, RegistryFile

    old = {"processes": [{"id": "r", "name": "R", "tier": 2, "channel": "C0R", "raci": {"escalation": "U0X"},
                          "capability": "act", "allowed_tools": [], "qa": {"sample_rate": 0}}]}
    assert RegistryFile.model_validate(old, context=STORED).processes[0].qa_sample_rate() == 0
