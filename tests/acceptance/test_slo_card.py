"""Acceptance (issue 13, point 1): `/aop who` on each example process answers, in its first
sentence, who gets paged, what breaks and how to roll back; the same card ends each thread."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.domain.registry import load_registry_file
from bot.sandbox.records import message_text
from bot.surfaces.blocks import duration
from tests.conftest import ROOT
from tests.procs import aopbot

EXAMPLE = ROOT / "aops.example.yml"


@pytest.fixture
def registry_path(tmp_path) -> Path:
    dst = tmp_path / "aops.yml"
    shutil.copy(EXAMPLE, dst)
    return dst


@pytest.mark.parametrize("proc", load_registry_file(EXAMPLE).processes, ids=lambda p: p.id)
def test_who_answers_the_three_questions_in_its_first_sentence(slack, proc):
    text = message_text(slack.ask("U0ESCOWNER", f"who {proc.id}"))
    first = text.split("\n")[0]
    assert first.startswith(f"If *{proc.name}* makes a bad call, ")
    assert f"<@{proc.raci.escalation}>" in first  # the escalation owner, paged first
    for level in proc.escalation_policy[1:]:
        assert f"after {duration(level.after)}" in first  # each next level with its wait
    for tool in proc.allowed_tools or []:
        assert f"`{tool}`" in first
    if proc.capability == "draft":
        assert "only drafts" in first
    assert proc.blast_radius in first
    assert f"`/aop pause {proc.id}`" in first
    assert proc.rollback in first
    assert "Missing" not in text


def test_the_thread_ends_with_the_card(services, agent_for_example, stub):
    esc_id = agent_for_example.signal(process_id="support_refunds_tier2_v3").json()["id"]
    services.outbox.drain()
    thread = [m for m in stub.channel_messages("C0REFUNDS") if m.thread_ts and esc_id in json.dumps(m.blocks)][0]
    footer = message_text({"blocks": thread.blocks[-1:]})
    assert footer.startswith("If *Support refunds* makes a bad call, ")
    assert "Refunds up to $500 to the wrong customer" in footer and "/aop pause support_refunds_tier2_v3" in footer
    assert "<@" not in footer  # named, not mentioned: a re-render must not ping the owner


@pytest.fixture
def agent_for_example(make_agent):
    return make_agent(processes=("support_refunds_tier2_v3",))


def test_registry_check_refuses_tier_3_without_rollback(tmp_path):
    text = EXAMPLE.read_text().replace('    rollback: "Revert the PR and rebuild main"\n', "")
    bad = tmp_path / "aops.yml"
    bad.write_text(text)
    result = aopbot("registry", "check", str(bad))
    assert result.returncode != 0
    assert "(dependency_bumps_tier3_v1): rollback: required at tier 3" in result.stdout + result.stderr
