"""Sampling QA's arithmetic: the keyed draw covers the agent's own record only, and the Wilson
interval of the error rate."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bot.domain import qa
from bot.surfaces import qa_blocks

KEY = b"operator-held key"
RECORD = {"process_id": "refunds", "timestamp": "2026-11-02T10:00:00Z", "model": "m", "inputs": {"t": "1"},
          "tools_invoked": ["billing.refund"], "policy_checks": ["limit"], "decision": "refunded",
          "human_escalation": False, "trace_id": None}
SERVER_ADDED = {"owner": "U0DRI", "tier": 2, "seq": 7, "prev_hash": "a" * 64, "hash": "b" * 64, "hash_version": 2}


def test_the_draw_covers_the_agents_record_not_what_the_server_adds():
    stored = {**RECORD, **SERVER_ADDED}
    assert qa.sampling_material(stored) == RECORD
    elsewhere = {**stored, "seq": 900, "prev_hash": "c" * 64, "hash": "d" * 64, "tier": 3, "owner": "x"}
    assert qa.draw(KEY, elsewhere) == qa.draw(KEY, stored)  # another position in another chain: same draw
    assert 0 <= qa.draw(KEY, stored) < 1
    assert qa.draw(KEY, {**stored, "timestamp": "2026-11-02T10:00:01Z"}) != qa.draw(KEY, stored)
    assert qa.draw(KEY, {**stored, "inputs": {"t": "2"}}) != qa.draw(KEY, stored)
    assert qa.draw(b"another key", stored) != qa.draw(KEY, stored)  # without the key, nobody can predict it


def test_the_sample_rate_is_the_share_sampled():
    records = [{**RECORD, "timestamp": f"2026-11-02T10:{i // 60 % 60:02d}:{i % 60:02d}Z", "inputs": {"t": str(i)}}
               for i in range(4000)]
    assert not any(qa.is_sampled(KEY, r, 0.0) for r in records)
    assert all(qa.is_sampled(KEY, r, 1.0) for r in records)
    share = sum(qa.is_sampled(KEY, r, 0.1) for r in records) / len(records)
    assert 0.085 < share < 0.115  # 4000 draws at 10%: within about 3 standard deviations


@pytest.mark.parametrize(("wrong", "n", "low", "high"), [
    (8, 100, 0.0411, 0.1500),  # the acceptance case
    (0, 20, 0.0, 0.1611),  # no errors seen in 20 is not "0 % ± 0"
    (20, 20, 0.8389, 1.0),
    (50, 1000, 0.0382, 0.0653),
])
def test_wilson_interval(wrong, n, low, high):
    lo, hi = qa.wilson(wrong, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_an_error_rate_is_flagged_only_when_its_lower_bound_crosses_the_limit():
    assert qa.wilson(0, 0) == (0.0, 1.0) and qa.ErrorRate("p").rate is None
    assert not qa.ErrorRate("p", 100, 8).above(0.05)  # 8.0 %, but 4.1 % is still possible
    assert qa.ErrorRate("p", 100, 8).above(0.03)
    assert not qa.ErrorRate("p").above(0.0)
    assert qa_blocks.error_rate_text(qa.ErrorRate("p", 100, 8)) == "8.0% (95% CI 4.1–15.0%; 8 wrong of 100 reviewed)"
    assert qa_blocks.error_rate_text(qa.ErrorRate("p")) == "no reviews yet"


def test_review_targets_follow_the_tiers():
    assert [qa.review_target_seconds(t) for t in range(5)] == [4 * 3600, 4 * 3600, 1800, 3600, 4 * 3600]


def test_the_audit_snippet_in_the_docs_draws_what_the_bot_draws():
    """docs/registry.md#sampling-qa lets the operator recompute every choice from an export: its field
    list and arithmetic stay those of the code (a field added to the record schema shows up here)."""
    from bot.api.schemas import ChangelogRecord
    from bot.ops.config import Settings
    from tests.unit.test_docs import python_block, run_snippet, text

    snippet = run_snippet(python_block(text("registry.md"), "def qa_draw("))
    assert set(snippet["RECORD_FIELDS"]) == set(ChangelogRecord.model_fields) - qa.NOT_SAMPLED
    for i in range(50):
        entry = {**RECORD, **SERVER_ADDED, "inputs": {"t": str(i), "n": i / 3, "é": [None, True]}}
        assert snippet["qa_draw"](KEY, entry) == qa.draw(KEY, entry)
    derived = Settings(slack_signing_secret="s3cret-signing").qa_key
    assert derived == hmac.new(b"s3cret-signing", b"aopbot qa sampling v1", hashlib.sha256).digest()
