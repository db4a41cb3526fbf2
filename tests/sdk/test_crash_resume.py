"""Acceptance (issue 15, point 2): an agent process SIGKILLed while it waits for an approval, then
started again with the same call, resumes the same escalation (nobody is paged twice) and runs the
tool once it is approved; the same tool with different arguments is a new escalation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aopbot_client import AopClient
from bot.domain.models import Escalation
from tests.conftest import wait_for
from tests.procs import ROOT

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Agents:
    """Agent processes (tests/sdk/refund_agent_proc.py), each with its own log; all killed at the end."""

    def __init__(self, served, tmp_path: Path):
        self.served, self.tmp_path = served, tmp_path
        self.ran = tmp_path / "ran.ndjson"
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, ticket_id: str, amount: int) -> tuple[subprocess.Popen, Path]:
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tests.sdk.refund_agent_proc", str(self.ran), ticket_id,
                                     str(amount)], cwd=ROOT, env={**os.environ, **self.served.env},
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def runs(self) -> list[list]:
        return [json.loads(line) for line in self.ran.read_text().splitlines()] if self.ran.exists() else []

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def test_a_killed_agent_retrying_the_same_call_is_not_paged_twice_and_runs_once_approved(served, db, tmp_path):
    agents = Agents(served, tmp_path)
    try:
        first, first_log = agents.start("first", "T-1", 50)
        esc_id = served.paged(1)
        wait_for(lambda: logged(first_log, f"escalation {esc_id} opened"), timeout=60, what="the agent waiting")
        first.send_signal(signal.SIGKILL)  # mid-wait: its long-poll is open
        assert first.wait(10) == -signal.SIGKILL

        again, again_log = agents.start("again", "T-1", 50)
        wait_for(lambda: logged(again_log, f"escalation {esc_id} resumed"), timeout=60, what="the retry resuming")
        assert served.escalation_ids() == [esc_id]  # paged once
        with db.transaction() as s:
            assert s.scalar(select(func.count()).select_from(Escalation)) == 1
        assert again.poll() is None and agents.runs() == []  # still waiting for a human

        served.approve(esc_id)
        assert again.wait(60) == 0, again_log.read_text()
        assert logged(again_log, "refunded $50 on T-1")
        assert agents.runs() == [["T-1", 50]]

        other, other_log = agents.start("other", "T-1", 75)  # the same tool, different arguments
        new_id = served.paged(2)
        assert new_id != esc_id
        wait_for(lambda: logged(other_log, f"escalation {new_id} opened"), timeout=60, what="a new escalation")
        with AopClient(served.url, served.token) as aop:
            aop.cancel(new_id)
        assert other.wait(60) == 3 and logged(other_log, "was cancelled")
        assert agents.runs() == [["T-1", 50]]
    finally:
        agents.kill_all()
