"""`aopbot` command line (docs/operations.md)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys

from bot.ops.config import Settings, get_settings

log = logging.getLogger("aopbot.cli")


SOCKET_PING_S = 3  # Socket Mode ping interval (see cmd_serve)


def _db(settings: Settings):
    from bot.ops.db import Database

    return Database(settings.database_url)


def cmd_serve(args, settings: Settings) -> int:
    import uvicorn

    from bot.domain.registry import RegistryError
    from bot.ops import logs, worker
    from bot.ops.app import build_services, create_http_app
    from bot.ops.migrate import is_current
    from bot.ops.scheduler import Scheduler
    from bot.sandbox import embed

    logs.setup(settings.aop_log_level.upper(), [
        s.get_secret_value() for s in (settings.slack_signing_secret, settings.slack_bot_token,
                                       settings.slack_app_token) if s is not None])
    if args.delivery_worker is not None:  # the child `serve` starts for delivery (bot/ops/worker.py)
        return worker.run(settings, args.delivery_worker)
    db = _db(settings)
    if not is_current(db.engine):
        log.error("database schema is not current; run `aopbot migrate` first")
        return 2
    sandbox = embed.wanted(settings)
    if sandbox:
        settings = embed.sandbox_settings(settings)
        url = f"{embed.local_base(settings)}/sandbox"
        print(f"aopbot: no Slack credentials, so Slack is simulated here. Open {url}", file=sys.stderr, flush=True)
        log.warning("sandbox on: Slack is simulated by this process; open %s", url)
    try:
        services = build_services(settings, db, sandbox=sandbox)
    except RegistryError as e:
        print("\n".join(e.errors), file=sys.stderr)
        return 2
    app = create_http_app(services)
    if not settings.bot_token:
        log.warning("SLACK_BOT_TOKEN is not set and the sandbox is off (AOP_SANDBOX=0, or HOST %s is not "
                    "loopback without AOP_SANDBOX=1): escalations are kept and go out once it is set", settings.host)

    delivery = None
    if worker.wanted(settings, db.is_postgres, sandbox):
        # Delivery and timers in a child; this process only follows the registry in force.
        scheduler = Scheduler(services.follow_registry, settings.aop_tick_seconds)
        delivery = worker.DeliveryWorker().start()
        services.kick_hooks.append(delivery.kick)
        services.ready_checks.append(lambda: None if delivery.ready.is_set() else "the delivery worker is starting")
        scheduler.start()
    else:
        scheduler = services.run_scheduler()
    socket_handler = None
    if settings.slack_app_token and app.state.bolt is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        # slack_sdk calls a connection dead after 4 unanswered pings: at Bolt's 10 s a dropped
        # connection went unnoticed for about a minute (clicks lost meanwhile); at 3 s, ~15 s.
        socket_handler = SocketModeHandler(app.state.bolt, settings.slack_app_token.get_secret_value(),
                                           ping_interval=SOCKET_PING_S)
        socket_handler.connect()
        log.info("Socket Mode connected")
    log.info("aopbot serving on http://%s:%s (%d processes)", settings.host, settings.port,
             len(services.registry.all()))
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the signal; with these
    # handlers that re-raise is a no-op, so the cleanup below runs and the exit code is 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    # What start-up built lives as long as the process: out of the collector's sight, a full
    # collection pauses every request thread for less (they showed as the slowest click acks).
    gc.freeze()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    finally:
        scheduler.shutdown()
        if delivery is not None:
            delivery.stop()
        if socket_handler is not None:
            socket_handler.close()
        db.dispose()
    return 0


def cmd_migrate(args, settings: Settings) -> int:
    from bot.ops.migrate import upgrade

    upgrade(settings.database_url)
    print("database at head")
    return 0


def cmd_registry(args, settings: Settings) -> int:
    from bot.domain.registry import RegistryError, load_registry_file, store_snapshot

    path = args.file or settings.aop_registry
    try:
        reg = load_registry_file(path)
    except RegistryError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {len(e.errors)} error(s); nothing changed", file=sys.stderr)
        return 1
    if args.action == "check":
        print(f"{path}: ok ({len(reg.processes)} processes)")
        return 0
    db = _db(settings)
    with db.transaction() as s:
        snap = store_snapshot(s, reg, str(path))
    print(f"{path}: synced as snapshot {snap} ({len(reg.processes)} processes); running bots follow within a tick")
    return 0


def cmd_token(args, settings: Settings) -> int:
    from bot.domain import tokens

    db = _db(settings)
    if args.action == "create":
        if not args.process:
            print("token create: --process ID is required", file=sys.stderr)
            return 1
        from bot.ops.app import load_registry

        registry = load_registry(settings, db)
        unknown = [p for p in args.process if registry.get(p) is None]
        if unknown:
            print(f"token create: unknown process(es): {', '.join(unknown)}", file=sys.stderr)
            return 1
        with db.transaction() as s:
            new = tokens.create(s, args.process, args.name, args.agent_user)
        print(f"token id {new.id} for {', '.join(args.process)}. Shown once; store it now.")
        print(f"token: {new.token}")
        print(f"callback signing secret: {new.callback_secret}")
        return 0
    if args.action == "list":
        with db.transaction() as s:
            rows = tokens.list_tokens(s)
        for r in rows:
            state = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "active"
            print(f"{r.id}\t{r.prefix}…\t{r.name}\t{','.join(r.process_ids)}\t{state}")
        return 0
    if args.action == "revoke":
        if args.id is None:
            print("token revoke: give the token id (see `aopbot token list`)", file=sys.stderr)
            return 1
        with db.transaction() as s:
            ok = tokens.revoke(s, args.id)
        print(f"token {args.id} revoked" if ok else f"no token {args.id}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    return 1


def cmd_changelog(args, settings: Settings) -> int:
    from bot.domain import changelog
    from bot.ops import clock

    db = _db(settings)
    if args.action == "heads":
        with db.transaction() as s:
            for a in changelog.heads(s, args.process):
                print(json.dumps({**changelog.anchor_to_dict(a), "at": clock.iso(clock.now())}))
        return 0
    if args.action == "verify":
        anchors = []
        try:
            if args.anchors:
                with open(args.anchors, encoding="utf-8") as f:
                    anchors += changelog.parse_anchors(f, args.anchors)
            if args.from_slack:
                anchors += _heads_from_slack(settings, args.days)
        except (OSError, ValueError) as e:
            print(f"cannot read the published heads: {e}", file=sys.stderr)
            return 2
        if args.process:
            anchors = [a for a in anchors if a.process_id == args.process]
        with db.transaction() as s:
            checked, problems = changelog.verify(s, args.process)
            broken = {p.process_id for p in problems}
            problems += [p for p in changelog.check_anchors(s, anchors) if p.process_id not in broken]
        for p in sorted(problems, key=lambda p: p.process_id):
            print(f"BROKEN {p}")
        held = f"; held to {len(anchors)} published head(s)" if args.anchors or args.from_slack else ""
        print(f"{checked} entries checked, {len(problems)} broken chain(s){held}")
        return 1 if problems else 0
    since = None
    if args.since:
        try:
            since = clock.parse_iso(args.since)
        except ValueError:
            print(f"--since {args.since!r} is not an ISO 8601 time with a zone (e.g. 2026-11-01T00:00:00Z)",
                  file=sys.stderr)
            return 2
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        with db.transaction() as s:
            for entry in changelog.iter_all(s, args.process, since):
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _heads_from_slack(settings: Settings, days: int) -> list:
    """The heads the daily digest published in AOP_DIGEST_CHANNEL (ValueError when it cannot say)."""
    from bot.delivery.outbox import PermanentFailure, RetryLater
    from bot.delivery.slack_client import SlackClient
    from bot.delivery.slack_digest import published_heads

    if not settings.bot_token or not settings.aop_digest_channel:
        raise ValueError("--from-slack needs SLACK_BOT_TOKEN and AOP_DIGEST_CHANNEL (where the digest posts)")
    client = SlackClient(settings.bot_token, settings.slack_api_url, interactive=True)
    try:
        anchors = published_heads(client, settings.aop_digest_channel, days)
    except (PermanentFailure, RetryLater) as e:
        raise ValueError(f"Slack: {e} (the bot needs channels:history in {settings.aop_digest_channel})") from e
    if not anchors:
        raise ValueError(f"no digest with chain heads in {settings.aop_digest_channel} over the last {days} days")
    return anchors


def cmd_digest(args, settings: Settings) -> int:
    from bot.ops import clock
    from bot.surfaces import digest, digest_blocks

    db = _db(settings)
    if args.dry_run:
        from bot.domain.registry import Registry, RegistryError, latest_snapshot, load_registry_file

        try:  # read-only: the file as it is, else the registry in force; nothing is stored
            registry = Registry(load_registry_file(settings.aop_registry))
        except RegistryError:
            with db.transaction() as s:
                latest = latest_snapshot(s)
            registry = Registry(latest[1], latest[0]) if latest else Registry()
        from zoneinfo import ZoneInfo

        now = clock.now()
        tz = ZoneInfo(settings.aop_timezone)
        with db.transaction() as s:
            data = digest.build_digest(s, registry, digest.days_back(now, tz, 1), now, settings.aop_timezone, now)
        if settings.bot_token:  # lookups only (users.lookupByEmail, usergroups.users.list): nothing is posted
            from bot.delivery.directory import Directory
            from bot.delivery.slack_client import SlackClient

            try:
                client = SlackClient(settings.bot_token, settings.slack_api_url, interactive=True)
                digest.check_owners(data, Directory(client).resolve)
            except Exception as e:
                print(f"(owners not checked against Slack: {e})", file=sys.stderr)
        sys.stdout.write(digest_blocks.digest_text(data))
        return 0
    if not settings.aop_digest_channel:
        print("digest: AOP_DIGEST_CHANNEL is not set; nothing to send (try --dry-run)", file=sys.stderr)
        return 2
    from bot.ops.app import build_services

    services = build_services(settings, db)
    local_date, _, _ = digest.window_for(clock.now(), settings)
    if not digest.send_digest(db, services.registry, settings):
        run = digest.claimed(db, local_date)
        who = f" by {run.claimed_by} at {clock.iso(run.claimed_at)}" if run else ""
        print(f"the digest for {local_date} was already sent{who}; not sending it twice")
        return 0
    if settings.bot_token:
        services.outbox.drain()  # what a replica's next tick would do
        print(f"digest for {local_date} sent to {settings.aop_digest_channel}")
    else:
        print(f"digest for {local_date} queued; it goes out once SLACK_BOT_TOKEN is set and aopbot runs")
    return 0


def cmd_outbox(args, settings: Settings) -> int:
    from bot.delivery import outbox

    db = _db(settings)
    if args.action == "list":
        found = outbox.rows(db, args.status)
        for it in found:
            print(f"{it.id}\t{it.status}\t{it.kind}\t{it.ordering_key}\tattempts {it.attempts}\t"
                  f"{it.escalation_id or '-'}\t{(it.last_error or '')[:200]}")
        print(f"{len(found)} row(s)" + (f" {args.status}" if args.status else " pending or failed"))
        return 0
    ids = args.ids if not args.all_failed else [it.id for it in outbox.rows(db, "failed", limit=100_000)]
    if not ids:
        print(f"outbox {args.action}: give row ids (see `aopbot outbox list`) or --all-failed", file=sys.stderr)
        return 1
    done = (outbox.retry if args.action == "retry" else outbox.drop)(db, ids)
    print(f"{done} row(s) {'queued again' if args.action == 'retry' else 'dropped'}")
    if done < len(ids):
        print(f"{len(ids) - done} row(s) left as they are: unknown, already delivered or dropped, or being "
              "delivered right now (try again in a moment)", file=sys.stderr)
    return 0 if done else 1


def cmd_demo(args, settings: Settings) -> int:
    from bot.ops.app import load_registry
    from bot.sandbox import demo, embed

    db = _db(settings)
    return demo.run(db, load_registry(settings, db), args.url or embed.local_base(settings), args.sample or [],
                    args.wait)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aopbot", description="Slack escalation bot for agent-operated processes")
    sub = p.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="run the bot (HTTP API, Slack, scheduler)")
    srv.add_argument("--delivery-worker", metavar="FDS", help=argparse.SUPPRESS)  # the child serve starts
    srv.set_defaults(fn=cmd_serve)
    sub.add_parser("migrate", help="upgrade the database schema to head").set_defaults(fn=cmd_migrate)
    r = sub.add_parser("registry", help="check or sync the process registry")
    r.add_argument("action", choices=["check", "sync"])
    r.add_argument("file", nargs="?", help="registry file (default: AOP_REGISTRY)")
    r.set_defaults(fn=cmd_registry)
    t = sub.add_parser("token", help="agent tokens")
    t.add_argument("action", choices=["create", "list", "revoke"])
    t.add_argument("id", nargs="?", type=int, help="token id (revoke)")
    t.add_argument("--process", action="append", help="process id the token may signal (repeatable)")
    t.add_argument("--name", help="a label for the agent")
    t.add_argument("--agent-user", help="the agent's own Slack user ID, which may never approve")
    t.set_defaults(fn=cmd_token)
    c = sub.add_parser("changelog", help="export or verify the agent change log; print its chain heads")
    c.add_argument("action", choices=["export", "verify", "heads"])
    c.add_argument("--process", help="only this process")
    c.add_argument("--since", help="ISO 8601 time (export)")
    c.add_argument("--output", "-o", help="file to write (export; default stdout)")
    c.add_argument("--anchors", metavar="FILE", help="verify: also hold the log to heads saved from `changelog heads`")
    c.add_argument("--from-slack", action="store_true",
                   help="verify: also hold the log to the heads the daily digest published in Slack")
    c.add_argument("--days", type=int, default=30, help="verify --from-slack: how many days of digests to read")
    c.set_defaults(fn=cmd_changelog)
    d = sub.add_parser("digest", help="send today's daily digest now (once a day), or print it")
    d.add_argument("--dry-run", action="store_true", help="print the last day's digest; send nothing")
    d.set_defaults(fn=cmd_digest)
    o = sub.add_parser("outbox", help="deliveries waiting or failed for good: list, retry, drop")
    o.add_argument("action", choices=["list", "retry", "drop"])
    o.add_argument("ids", nargs="*", type=int, help="row ids (retry, drop)")
    o.add_argument("--status", choices=["pending", "failed", "done", "dropped"], help="list only this status")
    o.add_argument("--all-failed", action="store_true", help="retry or drop every failed row")
    o.set_defaults(fn=cmd_outbox)
    m = sub.add_parser("demo", help="raise sample escalations against a running bot (see /sandbox)")
    m.add_argument("--sample", action="append", choices=["tier0", "tier2", "tier3", "tier4"],
                   help="which sample (repeatable; default: every one the registry can take)")
    m.add_argument("--url", help="the running bot (default: http://HOST:PORT)")
    m.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait up to this long for the outcomes and print them with their change-log entries")
    m.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    return args.fn(args, settings)


if __name__ == "__main__":
    sys.exit(main())
