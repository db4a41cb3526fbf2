"""Composition root: builds the services, the HTTP app (agent API + Slack), the scheduler."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from slack_bolt import App as BoltApp
from slack_bolt import BoltRequest
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from bot.api.limits import BodyLimit
from bot.api.routes import build_api
from bot.delivery.callbacks import Callbacks
from bot.delivery.directory import Directory
from bot.delivery.outbox import Outbox, enqueue
from bot.delivery.slack_client import SlackClient
from bot.delivery.slack_digest import DigestSender
from bot.delivery.slack_flows import SlackFlows
from bot.delivery.slack_qa import QaFlows
from bot.domain import escalations, governance, inbox, paging
from bot.domain.models import OutboxItem
from bot.domain.registry import Registry, RegistryError, latest_snapshot, load_registry_file, store_snapshot
from bot.ops import clock
from bot.ops.config import Settings
from bot.ops.db import Database
from bot.ops.metrics import exporter
from bot.ops.scheduler import KICKED, SLACK_LANE, Scheduler
from bot.ops.wakeups import Wakeups
from bot.sandbox import embed
from bot.sandbox.routes import Sandbox, router
from bot.surfaces import digest

log = logging.getLogger("aopbot")


@dataclass
class Services:
    """Everything a listener, job or endpoint needs; one per process."""

    settings: Settings
    db: Database
    registry: Registry
    client: SlackClient  # interactive: for Bolt's listeners, where a person waits
    outbox: Outbox  # the Slack lane (pages, renders, DMs, the digest)
    flows: SlackFlows
    callbacks: Outbox  # the agents' lane: a slow receiver never holds a page
    wakeups: Wakeups  # long-polls, woken by the commit
    sandbox: Sandbox | None = None  # Slack simulated by this process (no Slack credentials)
    kick_hooks: list = field(default_factory=list)
    ready_checks: list = field(default_factory=list)  # each: None, or why GET /readyz answers 503
    _tick_lock: threading.Lock = field(default_factory=threading.Lock)
    _deliver_lock: threading.Lock = field(default_factory=threading.Lock)
    _callback_lock: threading.Lock = field(default_factory=threading.Lock)
    _people_looked_at: datetime | None = None

    def kick(self, callbacks: bool = True) -> None:
        """New work committed: deliver it now. callbacks=False: only Slack work was queued (a signal's
        page), so the callback lane is left to its interval."""
        jobs = KICKED if callbacks else SLACK_LANE
        for hook in self.kick_hooks:
            hook(jobs)

    def not_ready(self) -> str | None:
        return next((why for why in (check() for check in self.ready_checks) if why), None)

    def tick(self) -> None:
        """One whole pass (tests and `aopbot digest` use it): the timers, then the deliveries."""
        self.run_timers()
        self.deliver()
        self.deliver_callbacks()

    def run_timers(self) -> None:
        """Follow the registry, expire and re-page what is due, send the daily digest when its time has
        come. Its own scheduler job, so a long delivery backlog never delays a re-page or an expiry."""
        if not self._tick_lock.acquire(blocking=False):
            return
        try:
            self.refresh_registry()
            if inbox.replay(self.db):  # clicks a crash left between the ack and their decision
                self.kick()
            escalations.expire_due(self.db)
            paging.repage_due(self.db)
            digest.maybe_send_digest(self.db, self.registry, self.settings)
            self.queue_people_check()
        except Exception:
            log.exception("timers failed; the next tick retries")
        finally:
            try:  # whatever failed above: no commit checkpoints SQLite's log, so the tick must
                self.db.checkpoint()
            except Exception:
                log.exception("could not checkpoint the database's write-ahead log; the next tick retries")
            self._tick_lock.release()

    def queue_people_check(self) -> None:
        """Ask Slack about registry people not checked today (at start, after a registry change, then
        daily); one queued check at a time, looked for at most once a minute."""
        now = clock.now()
        if self._people_looked_at is not None and now - self._people_looked_at < timedelta(minutes=1):
            return
        self._people_looked_at = now
        with self.db.transaction() as s:
            people = governance.people_to_check(s, self.registry, now)
            queued = s.scalar(select(OutboxItem.id).where(OutboxItem.ordering_key == "check_people",
                                                          OutboxItem.status == "pending").limit(1))
            if people and queued is None:
                enqueue(s, "check_people", "check_people", {"people": people})

    def deliver(self) -> datetime | None:
        """Deliver what the Slack lane holds; returns when its next waiting row is due."""
        if self.settings.bot_token:
            return _drain(self.outbox, self._deliver_lock, "delivery")
        return None

    def deliver_callbacks(self) -> datetime | None:
        """Deliver agent callbacks: their own scheduler job, threads and claims."""
        return _drain(self.callbacks, self._callback_lock, "callback")

    def heartbeat(self) -> None:
        """Both lanes' workers are alive (and keep the leases of what they are delivering)."""
        self.outbox.heartbeat()
        self.callbacks.heartbeat()

    def run_scheduler(self) -> Scheduler:
        """Start every job of this bot (timers, both outbox lanes, heartbeat, the digest), kicked by new
        work: in `serve`, or in its delivery worker (bot.ops.worker)."""
        s = self.settings
        scheduler = Scheduler(
            self.run_timers, s.aop_tick_seconds, heartbeat=self.heartbeat,
            deliver=self.deliver, deliver_callbacks=self.deliver_callbacks,
            digest=lambda: digest.maybe_send_digest(self.db, self.registry, s),
            digest_time=s.aop_digest_time, digest_timezone=s.aop_timezone,
        )
        self.kick_hooks.append(scheduler.kick)
        scheduler.start()
        return scheduler

    def follow_registry(self) -> None:
        """The API process's only timer when delivery runs in a process of its own (bot.ops.worker)."""
        try:
            self.refresh_registry()
        except Exception:
            log.exception("could not read the registry in force; the next tick retries")

    def refresh_registry(self) -> None:
        with self.db.transaction() as s:
            latest = latest_snapshot(s)
        if latest is not None and latest[0] != self.registry.snapshot_id:
            self.registry.replace(latest[1], latest[0])
            log.info("registry snapshot %s in force (%d processes)", latest[0], len(self.registry.all()))


def _drain(lane: Outbox, lock: threading.Lock, what: str) -> datetime | None:
    """One pass over a lane, never two at once in this process; a failure waits for the next pass.
    Returns when the lane's next waiting row is due (the scheduler runs the next pass then)."""
    if not lock.acquire(blocking=False):
        return None
    try:
        lane.drain(max_batches=20)
        return lane.next_due()
    except Exception:
        log.exception("%s pass failed; the next pass retries", what)
        return None
    finally:
        lock.release()


def load_registry(settings: Settings, db: Database) -> Registry:
    """The file if it is valid (recorded as the registry in force), else the last good one."""
    try:
        reg = load_registry_file(settings.aop_registry)
    except RegistryError as e:
        with db.transaction() as s:
            latest = latest_snapshot(s)
        for line in e.errors:
            log.error("registry: %s", line)
        if latest is None:
            raise
        log.error("registry file refused; keeping snapshot %s in force", latest[0])
        return Registry(latest[1], latest[0])
    with db.transaction() as s:
        snap_id = store_snapshot(s, reg, str(settings.aop_registry))
    return Registry(reg, snap_id)


def build_services(settings: Settings, db: Database | None = None, sandbox: bool = False,
                   registry: Registry | None = None) -> Services:
    """With sandbox=True the settings are the sandbox's (embed.sandbox_settings): Slack is served here.
    registry: the one in force (the delivery worker's), instead of loading and recording the file."""
    db = db or Database(settings.database_url)
    registry = registry or load_registry(settings, db)
    # One client class; in-place retries only where a person waits (Bolt's listeners).
    client = SlackClient(settings.bot_token, settings.slack_api_url, interactive=True)
    delivery_client = SlackClient(settings.bot_token, settings.slack_api_url, interactive=False)
    directory = Directory(delivery_client)
    outbox = Outbox(db, exclude=frozenset({"callback"}))
    callback_lane = Outbox(db, kinds=frozenset({"callback"}))
    flows = SlackFlows(db, delivery_client, directory)
    flows.register(outbox)
    Callbacks(db, settings.poll_url, settings.callback_allow).register(callback_lane)
    DigestSender(delivery_client, directory).register(outbox)
    QaFlows(db, delivery_client, directory).register(outbox)
    simulated = Sandbox(settings, db, registry, embed.local_base(settings)) if sandbox else None
    wakeups = Wakeups()
    db.on_commit(wakeups.notify)
    return Services(settings, db, registry, client, outbox, flows, callback_lane, wakeups, simulated)


def build_bolt(services: Services) -> BoltApp | None:
    """The Slack app (same listeners in HTTP and Socket Mode), or None without credentials."""
    settings = services.settings
    if not settings.bot_token or not settings.signing_secret:
        return None
    from handlers import register

    # process_before_response: Slack's answer goes out when the listener returns, from the request's
    # own thread. Without it Bolt runs the listener on another thread and polls for its ack every
    # 10 ms (most of a click's time in a profile); our listeners ack and return at once, and do the
    # rest on our own threads (handlers/common.py). The same holds in Socket Mode.
    bolt = BoltApp(
        signing_secret=settings.signing_secret,
        client=services.client,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
        process_before_response=True,
    )

    def inject(context, next):  # noqa: A002 - Bolt's middleware signature
        context["aop"] = services
        next()

    bolt.use(inject)
    register(bolt)
    return bolt


def create_http_app(services: Services) -> FastAPI:
    settings = services.settings
    api = build_api(services.db, services.registry, poll_url=settings.poll_url, callback_allow=settings.callback_allow,
                    wakeups=services.wakeups,
                    max_body_bytes=settings.aop_max_body_bytes, on_commit=services.kick,
                    metrics=exporter(services.db, services.outbox), qa_key=settings.qa_key,
                    not_ready=services.not_ready)
    bolt = build_bolt(services)
    api.state.bolt = bolt

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request):
        if bolt is None:
            return JSONResponse({"error": "slack_not_configured",
                                 "message": "set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"}, status_code=503)
        body = (await request.body()).decode("utf-8", errors="replace")
        bolt_req = BoltRequest(body=body, query=request.url.query, headers=dict(request.headers))
        resp = await run_in_threadpool(bolt.dispatch, bolt_req)
        return Response(content=resp.body, status_code=resp.status, headers=resp.first_headers_without_set_cookie())

    if services.sandbox is not None:
        api.include_router(router(services.sandbox))
    api.add_middleware(BodyLimit, max_bytes=settings.aop_max_body_bytes)
    return api
