"""Tier rules and the paging schedule: pure functions, no database."""

from __future__ import annotations

import pytest

from bot.domain import policy


def test_schedule_repeats_the_policy_after_the_last_gap():
    steps = policy.page_schedule([0, 900, 1800], repeat=1)
    assert [(s.offset_s, s.level) for s in steps] == [(0, 0), (900, 1), (1800, 2), (2700, 0), (3600, 1), (4500, 2)]


def test_a_one_level_policy_repeats_every_fifteen_minutes():
    steps = policy.page_schedule([0], repeat=2)
    assert [s.offset_s for s in steps] == [0, 900, 1800]


@pytest.mark.parametrize("tier, decides", [(0, False), (1, False), (2, True), (3, True), (4, True)])
def test_tiers_0_and_1_acknowledge_the_rest_decide(tier, decides):
    assert policy.needs_decision(tier) is decides


@pytest.mark.parametrize("status, tier, still_open", [
    ("pending", 0, True), ("pending", 4, True),
    ("acknowledged", 1, False),  # acknowledging ends tier 0-1
    ("acknowledged", 2, True),   # on tier 2+ the decision is still needed
    ("approved", 2, False), ("rejected", 3, False), ("expired", 2, False), ("cancelled", 0, False),
])
def test_what_counts_as_open(status, tier, still_open):
    assert policy.is_open(status, tier) is still_open


def test_tier_2_needs_one_approval():
    assert policy.quorum(2, ["U1"], set()).met
    assert not policy.quorum(2, [], set()).met


def test_tier_4_needs_two_distinct_people_one_from_compliance():
    compliance = {"UCOMP"}
    assert not policy.quorum(4, ["U1", "U1"], compliance).met  # one person counts once
    assert not policy.quorum(4, ["U1", "U2"], compliance).met  # nobody from compliance
    half = policy.quorum(4, ["UCOMP"], compliance)
    assert not half.met and half.progress() == "1 of 2 approvals"
    assert policy.quorum(4, ["U1", "UCOMP"], compliance).met
    assert policy.quorum(4, ["U1"], compliance).progress() == "1 of 2 approvals; waiting for compliance"


def test_the_agent_never_decides_even_when_listed():
    assert not policy.may_decide("UAGENT", {"UAGENT", "U1"}, agent_user="UAGENT")
    assert policy.may_decide("U1", {"UAGENT", "U1"}, agent_user="UAGENT")
    assert not policy.may_decide("USTRANGER", {"U1"}, agent_user=None)
