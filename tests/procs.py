"""Real `aopbot serve` processes for tests that need the whole bot: scheduler, Socket Mode, crashes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import BOT_TOKEN, SIGNING_SECRET

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aopbot(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=60)


def serve_env(db_url, stub, registry_path) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "AOP_REGISTRY": str(registry_path), "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": stub.url, "AOP_TICK_SECONDS": "0.2",
            "AOP_CALLBACK_ALLOW": "127.0.0.1"}


class ServeProcess:
    running: list[ServeProcess] = []  # every child started, so a failed test still kills them all
    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ServeProcess:
        """Start and wait until /readyz answers: generous, for a loaded 2-core machine; a child that
        does not come up is killed, never left running."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        ServeProcess.running.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"aopbot serve exited {self.proc.returncode}: {self.log()}")
            try:
                # Ready, not just alive: with delivery in a child, that child is up too (a test's
                # first signal must not wait on its start-up, or timed re-pages would drift).
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"aopbot serve did not come up in {timeout:.0f} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    @classmethod
    def kill_leftovers(cls) -> None:
        while cls.running:
            cls.running.pop().kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        return self.proc.returncode if self.proc else 0
