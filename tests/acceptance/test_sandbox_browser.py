"""The sandbox as a newcomer meets it (issue 9): a real `aopbot serve` with no Slack credentials and the
example registry, driven by a real headless Chromium through the /sandbox page.

Needs Chromium (`.ci/run` installs Debian's when missing; AOP_CHROMIUM points elsewhere). With
AOP_UPDATE_SCREENSHOT=1 it refreshes docs/sandbox.png, the picture README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.domain import changelog, tokens
from bot.ops.db import Database
from tests.conftest import ROOT, wait_for
from tests.procs import ServeProcess

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
CHROMIUM = os.environ.get("AOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOT = ROOT / "docs" / "sandbox.png"
TIMEOUT_MS = 30_000  # generous: a loaded 2-core machine


@pytest.fixture
def bot(tmp_path) -> Iterator[tuple[ServeProcess, str]]:
    """`make run` as a newcomer runs it: migrate, then serve the example registry, no Slack variables."""
    db_url = f"sqlite:///{tmp_path / 'aopbot.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AOP_SANDBOX"))}
    env |= {"DATABASE_URL": db_url, "AOP_REGISTRY": str(ROOT / "aops.example.yml")}
    subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    serve = ServeProcess(env, tmp_path / "serve.log")
    serve.env = {k: v for k, v in serve.env.items() if not k.startswith("SLACK_")}
    serve.start(timeout=90)
    try:
        yield serve, db_url
    finally:
        serve.stop()


@pytest.fixture
def browser() -> Iterator:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (or set AOP_CHROMIUM)"
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def as_person(page, user: str) -> None:
    page.select_option("#as-select", user)
    page.wait_for_function("u => document.body.dataset.viewer === u", arg=user)  # their view is on screen


def open_latest_thread(page) -> None:
    page.locator("#messages .msg a.replies").last.click()
    page.locator("#thread .msg").first.wait_for()


def approve_in_thread(page):
    page.locator("#thread .bk-button[data-action-id=aop_approve]").last.click()


def test_a_newcomer_decides_in_the_browser(bot, browser, tmp_path):
    serve, db_url = bot
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{serve.url}/sandbox?as=U0ESCOWNER")

    # A tier-2 sample: the parent message and the thread with Approve/Reject appear.
    page.click("button.sample[data-sample=tier2]")
    page.locator("#messages .msg", has_text="Refund $120 on ticket 123").first.wait_for()
    open_latest_thread(page)
    page.locator("#thread .bk-button[data-action-id=aop_approve]").wait_for()
    page.locator("#thread .bk-button[data-action-id=aop_approve]").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "pending.png"))
    if os.environ.get("AOP_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    # A stranger's click is refused privately.
    as_person(page, "U0STRANGER")
    approve_in_thread(page)
    page.locator("#thread .msg.ephemeral", has_text="can't decide").wait_for()
    as_person(page, "U0ESCOWNER")
    assert page.locator("#thread .msg.ephemeral").count() == 0  # the stranger's reply is theirs only

    # The approver approves: parent and thread update in place, the agent's side says approved.
    as_person(page, "U0REFUNDERS1")
    approve_in_thread(page)
    page.locator("#messages .msg.edited", has_text="Approved").first.wait_for()
    page.wait_for_function("() => !document.querySelector('#thread .bk-button[data-action-id=aop_approve]')")
    page.locator(".agent-escalation[data-status=approved]").wait_for()
    esc_id = page.locator(".agent-escalation[data-status=approved]").get_attribute("data-id")

    db = Database(db_url)
    try:
        with db.transaction() as s:
            entries = changelog.read(s, ["support_refunds_tier2_v3"], None, 100)
            token = tokens.create(s, ["support_refunds_tier2_v3"], "test-agent").token
    finally:
        db.dispose()
    assert [e["decision"] for e in entries if e.get("escalation_id") == esc_id] == ["approved"]
    poll = httpx.get(f"{serve.url}/api/v1/escalations/{esc_id}", headers={"Authorization": f"Bearer {token}"})
    assert poll.json()["status"] == "approved" and poll.json()["decided_by"] == "U0REFUNDERS1"


def test_reject_modal_quorum_and_commands_in_the_browser(bot, browser):
    serve, _ = bot
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{serve.url}/sandbox?as=U0ESCOWNER")

    # Reject through the modal: a blank reason is refused in the modal, a real one rejects.
    page.click("button.sample[data-sample=tier2]")
    page.locator("#messages .msg a.replies").first.wait_for()
    open_latest_thread(page)
    page.locator("#thread .bk-button[data-action-id=aop_reject]").click()
    page.locator("#modal textarea").wait_for()
    page.click("#modal-submit")
    page.locator("#modal .bk-error", has_text="A reason is required").wait_for()
    page.fill("#modal textarea", "The parcel was delivered on Tuesday")
    page.click("#modal-submit")
    page.wait_for_selector("#modal", state="hidden")
    page.locator(".agent-escalation[data-status=rejected]", has_text="The parcel was delivered").wait_for()
    page.locator("#messages .msg.edited", has_text="Rejected").first.wait_for()

    # Tier 4: two distinct people, one from compliance; the thread shows "1 of 2".
    page.click("button.sample[data-sample=tier4]")
    page.click("a.nav-channel[data-channel=C0KYC]")
    page.locator("#messages .msg a.replies").first.wait_for()
    as_person(page, "U0KYCOWNER")
    open_latest_thread(page)
    approve_in_thread(page)
    page.locator("#thread", has_text=re.compile(r"1 of 2")).wait_for()
    approve_in_thread(page)  # one person counts once
    page.locator("#thread .msg.ephemeral", has_text="already approved").wait_for()
    assert page.locator(".agent-escalation[data-status=pending]").count() == 1
    as_person(page, "U0COMPLIANCE1")
    approve_in_thread(page)
    page.locator(".agent-escalation[data-status=approved]").wait_for()

    # /aop answers in the page, to the person who asked.
    page.click("a.nav-channel[data-channel=C0REFUNDS]")
    page.fill("#command-input", "/aop who support_refunds_tier2_v3")
    page.press("#command-input", "Enter")
    page.locator("#messages .msg.ephemeral", has_text="Support refunds").first.wait_for()
    page.fill("#command-input", "pending")
    page.click("#command-send")
    page.locator("#messages .msg.ephemeral", has_text="open escalation").first.wait_for()


def test_aopbot_demo_raises_samples_and_reports_the_outcome(bot):
    """`aopbot demo --wait`: the agent's side in a terminal, decided by a click in the sandbox."""
    serve, _ = bot
    demo = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--sample", "tier2", "--wait", "120"],
                            cwd=ROOT, env=serve.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            def card():
                msgs = http.get("/sandbox/state", params={"as": "U0ESCOWNER"}).json()["messages"].get("C0REFUNDS", [])
                return next((m for m in msgs if any(b.get("type") == "actions" for b in m["blocks"])), None)

            thread = wait_for(card, timeout=60, what="the demo's escalation in #support-refunds")
            approve = next(e for b in thread["blocks"] if b.get("type") == "actions" for e in b["elements"]
                           if e["action_id"] == "aop_approve")
            http.post("/sandbox/act", json={"as": "U0ESCOWNER", "type": "button", "channel": "C0REFUNDS",
                                            "ts": thread["ts"], "action_id": "aop_approve", "value": approve["value"]})
        out, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, out
    assert "201 esc_" in out and "approved by U0ESCOWNER" in out
    assert '"decision": "approved"' in out and '"human_escalation": true' in out
