"""Shared fixtures: a migrated database (SQLite always, PostgreSQL with TEST_DATABASE_URL), the Slack
stand-in, the whole bot served over real HTTP, and agents holding real tokens."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import freezegun
import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.domain import tokens
from bot.domain.models import Base
from bot.ops.app import Services, build_services, create_http_app
from bot.ops.config import Settings
from bot.ops.db import Database
from bot.ops.migrate import upgrade
from tests.slack_requests import SlackSender
from tests.slack_stub import SlackStub

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_FIXTURE = Path(__file__).parent / "registry_fixture.yml"
SIGNING_SECRET = "test-signing-secret-0123456789"  # noqa: S105 - test value
BOT_TOKEN = "xoxb-test-token"  # noqa: S105 - test value

# Time travel is for our clock, not for the event loop of a server a test runs: a loop that saw frozen
# time sleeps until real time catches up with it (and its shutdown waited out the 10 s join).
freezegun.configure(extend_ignore_list=["asyncio", "uvicorn", "anyio", "starlette"])

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Wait for work another thread does (a Slack listener after its ack); fails loudly on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test() -> Iterator[None]:
    yield
    from tests.procs import ServeProcess

    ServeProcess.kill_leftovers()


# -- databases ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _worker_pg_url(worker_id: str) -> str:
    """One database per xdist worker, so parallel workers never share tables."""
    assert PG_URL
    if worker_id in ("master", "gw0") and os.environ.get("AOP_TEST_PG_SHARED") != "0":
        return PG_URL
    url = make_url(PG_URL)
    name = f"{url.database}_{worker_id}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url(worker_id) -> str:
    """PostgreSQL from TEST_DATABASE_URL, reset and migrated once; unreachable is a failure."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    url = _worker_pg_url(worker_id)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


def truncate_all(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        dst = tmp_path / "aopbot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), dst)
        return f"sqlite:///{dst}"
    url = request.getfixturevalue("pg_url")
    truncate_all(url)
    return url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


# -- Slack stand-in and the bot -------------------------------------------------------------------


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SlackStub]:
    stub = SlackStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def stub(slack_server) -> SlackStub:
    slack_server.reset()
    slack_server.usergroups.update({
        "S0REFUNDERS": ["U0REFUNDER1", "U0REFUNDER2"],
        "S0ONCALL": ["U0ONCALL"],
        "S0SECURITY": ["U0SEC"],
        "S0COMPLIANCE": ["U0COMP"],
    })
    slack_server.users_by_email.update({"owner@company.com": "U0OWNER", "designer@company.com": "U0DESIGNER"})
    # Everyone the registry names by user id is a member of the workspace (users.info knows them).
    for user_id in sorted(set(re.findall(r"\bU0[A-Z0-9]+\b", REGISTRY_FIXTURE.read_text()))):
        slack_server.add_user(user_id, user_id)
    return slack_server


@pytest.fixture
def registry_path(tmp_path) -> Path:
    dst = tmp_path / "aops.yml"
    shutil.copy(REGISTRY_FIXTURE, dst)
    return dst


@pytest.fixture
def settings(db_url, stub, registry_path) -> Settings:
    return Settings(
        database_url=db_url,
        aop_registry=str(registry_path),
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=stub.url,
        aop_public_url="http://aopbot.test",
        aop_callback_allow="127.0.0.1",  # the tests' webhook receivers listen on loopback
    )


@pytest.fixture
def services(settings, db) -> Services:
    return build_services(settings, db)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class RunningServer:
    def __init__(self, app, sock: socket.socket | None = None):
        self.sock = sock or bound_socket()
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def server(services) -> Iterator[RunningServer]:
    with RunningServer(create_http_app(services)) as running:
        yield running


@pytest.fixture
def slack(server, stub) -> Iterator[SlackSender]:
    sender = SlackSender(server.url, SIGNING_SECRET, workspace=stub)
    yield sender
    sender.close()


class Agent:
    """An agent integration: a token scoped to some processes, talking to the API over HTTP."""

    def __init__(self, base_url: str, token: str, token_id: int, callback_secret: str):
        self.token, self.token_id, self.callback_secret = token, token_id, callback_secret
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=70)

    def signal(self, **body) -> httpx.Response:
        body.setdefault("process_id", "refunds")
        body.setdefault("action", {"summary": "Refund $120 on ticket 123", "tools": ["billing.refund"],
                                   "params": {"amount": 120}})
        return self.http.post("/api/v1/escalations", json=body)

    def get(self, esc_id: str, wait: int = 0) -> dict:
        resp = self.http.get(f"/api/v1/escalations/{esc_id}", params={"wait": wait} if wait else None)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
def make_agent(server, db) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(processes=("refunds", "deploys", "kyc", "summaries", "limited", "fastpage", "burst"),
             agent_user=None) -> Agent:
        with db.transaction() as s:
            new = tokens.create(s, list(processes), "test-agent", agent_user)
        made.append(Agent(server.url, new.token, new.id, new.callback_secret))
        return made[-1]

    yield make
    for agent in made:
        agent.http.close()


@pytest.fixture
def agent(make_agent) -> Agent:
    return make_agent()


pytest_plugins = ["tests.webhooks"]  # the `receivers` fixture: agents' callback endpoints
