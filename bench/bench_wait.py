"""Where people wait (issue 12), measured from outside against a real `aopbot serve`.

Run: .venv/bin/python bench/bench_wait.py [--write]   (BENCH_DATABASE_URL: a PostgreSQL database this
may wipe, default the local `bench` database; SQLite runs in a temporary directory)

Each figure is measured in this one run, the floor beside ours where there is one:
- ingest: 16 concurrent POST /api/v1/escalations against a bare Starlette endpoint doing one INSERT +
  COMMIT on the same database (bench/floor_app.py), then 1,000 signals at once (the load generator
  in a process of its own, apart from the Slack stand-in);
- clicks: 100 Approve clicks a second, Slack's Web API answering after 300 ms: our HTTP answer;
- time to page at 10 signals a second (201 → the first chat.postMessage of that escalation);
- a long-poll's wake after the decision click;
- RSS of the serve process, idle and after the ingest run;
- the outbox claim with 100,000 pending rows over 70,000 channels (PostgreSQL);
- paging throughput with 20 channels each throttled to one message a second, as Slack limits
  chat.postMessage per channel (PostgreSQL);
- recovery after seven 429s and a 500 on one channel, and another channel's time to page meanwhile
  (PostgreSQL).
The Slack stand-in is the product's own workspace (bot.sandbox) on a port of its own, in this process.
--write puts the tables into docs/BENCHMARKS.md between the bench_wait markers; --only throttled,recover
(or postgres, sqlite, claim; ingest: the floor and the ingest rows alone, PostgreSQL) runs just those
parts and writes nothing. BENCH_PROFILE_INGEST=prefix (or BENCH_PROFILE_CLICKS) records py-spy stacks;
BENCH_CPU=1 prints each process's CPU over the 16-concurrent ingest runs (floor and ours).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bot.sandbox import payloads  # noqa: E402
from bot.sandbox.transport import StandaloneServer  # noqa: E402
from bot.sandbox.workspace import SlackWorkspace  # noqa: E402

PG = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench")
BOT_TOKEN, SECRET = "xoxb-bench", "bench-signing-secret"  # noqa: S105 - local benchmark values
PY = str(Path(sys.executable))
ESC = re.compile(r"esc_[0-9a-f]{20}")
PROCESS = """  - id: {id}
    name: Bench refunds
    tier: 2
    channel: {channel}
    capability: act
    allowed_tools: [billing.refund]
    raci: {{accountable: U0OWNER, escalation: U0OWNER}}
    approvals: {{approvers: [U0OWNER]}}
    rate_limit: {{per_minute: 1000000}}
"""
REGISTRY = "processes:\n" + PROCESS.format(id="bench", channel="C0BENCH")
SIGNAL = {"process_id": "bench", "action": {"summary": "Refund $12 on ticket 1", "tools": ["billing.refund"],
                                            "params": {"amount": 12}}, "inputs": {"ticket_id": "1"}}
THROTTLED = 20  # channels, each allowed one message a second (Slack's chat.postMessage limit per channel)
RATE_LIMITED = (429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"})


def channel_registry(n: int) -> str:
    """n processes like `bench`, each on a channel of its own: bench01 on C0BENCH01, …"""
    return "processes:\n" + "".join(PROCESS.format(id=f"bench{i:02d}", channel=f"C0BENCH{i:02d}")
                                     for i in range(1, n + 1))


# -- plumbing ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A server in its own process, killed however the bench ends."""

    def __init__(self, args: list[str], env: dict[str, str], health: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        args = [a.replace("{port}", str(self.port)) for a in args]
        self.proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + health, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{args} did not come up; see {log}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _cpu_groups(server_pid: int) -> dict[str, list[int]]:
    """The server, its children (the delivery worker), PostgreSQL's processes, and this process."""
    try:
        children = [int(c) for c in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()]
    except OSError:
        children = []
    postgres = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                and (d / "comm").exists() and (d / "comm").read_text().strip() == "postgres"]
    return {"server": [server_pid], "its children": children, "PostgreSQL": postgres, "bench + stand-in": [os.getpid()]}


def measured_cpu(server_pid: int, run, posts=lambda: 0):
    """run() while counting each group's CPU (BENCH_CPU=1): (run's result, a one-line account).
    posts(): messages the Slack stand-in holds (the pages sent meanwhile are part of the account)."""
    if not os.environ.get("BENCH_CPU"):
        return run(), ""
    posts_before = posts()
    groups = _cpu_groups(server_pid)
    before = {pid: _cpu_of(pid) for pids in groups.values() for pid in pids}
    gen_before = os.times().children_user + os.times().children_system
    t0 = time.perf_counter()
    result = run()
    wall = time.perf_counter() - t0
    used = {name: sum(max(0.0, _cpu_of(pid) - before[pid]) for pid in pids) for name, pids in groups.items()}
    used["load generator"] = os.times().children_user + os.times().children_system - gen_before
    line = f"{wall:.1f} s wall, CPU: " + ", ".join(f"{k} {v:.1f} s" for k, v in used.items()) + \
        f"; total {sum(used.values()):.1f} s; Slack messages posted meanwhile: {posts() - posts_before}"
    return result, line


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(v: float) -> str:
    return f"{v * 1000:,.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"


def reset_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


def migrate_and_mint(url: str, registry: Path, processes: tuple[str, ...] = ("bench",)) -> str:
    env = {**os.environ, "DATABASE_URL": url, "AOP_REGISTRY": str(registry)}
    subprocess.run([PY, "-m", "bot", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    scope = [arg for pid in processes for arg in ("--process", pid)]
    out = subprocess.run([PY, "-m", "bot", "token", "create", *scope, "--name", "bench"],
                         env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return re.search(r"token: (aop_\S+)", out).group(1)


async def hammer(url: str, path: str, headers: dict[str, str], n: int, concurrency: int,
                 body=lambda i: SIGNAL) -> tuple[float, list[float]]:
    """n POSTs (the i-th sends body(i), SIGNAL by default), `concurrency` at a time: (requests a second,
    latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:
        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                resp = await http.post(path, json=body(i))
                latencies.append(time.perf_counter() - t0)
                if resp.status_code >= 300:
                    raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return n / elapsed, latencies


async def burst(url: str, path: str, headers: dict[str, str], n: int) -> tuple[float, list[float]]:
    """n POSTs of SIGNAL at once, each on a connection of its own, written and read with bare asyncio
    streams: httpx with 1,000 connections in one pool was itself the bottleneck (the floor app took
    6.7 s at p99 through it, 1.1 s this way)."""
    host, port = url.split("//")[1].split(":")
    data = json.dumps(SIGNAL).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + data
    latencies: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        latencies.append(time.perf_counter() - t0)
        writer.close()
        if not status.split(b" ")[1].startswith(b"2"):
            raise RuntimeError(f"{path}: {status!r}")
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start), latencies


def hammer_apart(url: str, path: str, headers: dict[str, str], n: int, concurrency: int) -> tuple[float, list[float]]:
    """hammer() in a process of its own: the ingest rows' load generator shares no GIL with the Slack
    stand-in (which this process serves while the bot pages), so the floor and aopbot are driven alike.
    concurrency == n: burst() instead, every request at once."""
    out = subprocess.run([PY, str(Path(__file__).resolve()), "--hammer", json.dumps(
        {"url": url, "path": path, "headers": headers, "n": n, "concurrency": concurrency})],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    got = json.loads(out)
    return got["rps"], got["latencies"]


# -- the measurements ------------------------------------------------------------------------------------


class SlackSide:
    """The Slack stand-in, with an optional delay on every answer and a log of when each escalation's
    first post arrived. throttle_s: a channel (C…; not a DM) that got a message less than that long
    ago answers 429 with Retry-After 1, as Slack does; refusals[channel]: answers given, in turn, to
    that channel's next chat.postMessage calls instead of posting."""

    def __init__(self, throttle_s: float = 0.0) -> None:
        self.ws = SlackWorkspace(bot_token=BOT_TOKEN)
        self.delay_s = 0.0
        self.throttle_s = throttle_s
        self.refusals: dict[str, list[tuple[int, dict, dict]]] = {}
        self.first_post: dict[str, float] = {}
        self.channel_posts: list[tuple[str, float]] = []  # (channel, when) of each chat.postMessage let through
        self.throttled = 0  # 429s answered for the throttle
        self._last_post: dict[str, float] = {}
        self._lock = threading.Lock()
        self.ws.fail = self._hook
        self.server = StandaloneServer(self.ws).start()

    def _hook(self, method: str, args: dict):
        channel = str(args.get("channel", ""))
        if method in ("chat.postMessage", "chat.update") and channel.startswith("C"):
            with self._lock:
                now = time.perf_counter()
                if method == "chat.postMessage" and self.refusals.get(channel):
                    return self.refusals[channel].pop(0)
                if self.throttle_s and now - self._last_post.get(channel, -self.throttle_s) < self.throttle_s:
                    self.throttled += 1
                    return RATE_LIMITED
                self._last_post[channel] = now
                if method == "chat.postMessage":
                    self.channel_posts.append((channel, now))
        if method == "chat.postMessage" and not args.get("thread_ts"):
            found = ESC.search(json.dumps(args.get("blocks") or args.get("text") or ""))
            if found:
                with self._lock:
                    self.first_post.setdefault(found.group(0), time.perf_counter())
        if self.delay_s:
            time.sleep(self.delay_s)
        return None

    def threads(self) -> dict[str, dict]:
        """Each escalation's thread card (the message with the buttons)."""
        out = {}
        with self.ws._lock:
            msgs = list(self.ws.messages.values())
        for m in msgs:
            if m.thread_ts and m.channel == "C0BENCH":
                found = ESC.search(json.dumps(m.blocks))
                if found:
                    out[found.group(0)] = {"ts": m.ts, "thread_ts": m.thread_ts, "text": m.text, "blocks": m.blocks}
        return out


def bot_env(url: str, registry: Path, slack: SlackSide) -> dict[str, str]:
    return {"DATABASE_URL": url, "AOP_REGISTRY": str(registry), "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.server.url}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def paged_all(url: str, timeout: float = 300) -> None:
    """Wait until the bot has paged everything sent so far: each measured run starts from a bot as
    idle as the floor app it is compared with, not one still paging the run before it."""
    engine = create_engine(url)
    try:
        def drained() -> bool:
            with engine.connect() as conn:
                return not conn.execute(text("SELECT 1 FROM outbox WHERE status = 'pending' LIMIT 1")).first()
        wait_until(drained, timeout, "the bot to page what it was sent")
    finally:
        engine.dispose()


def click_payload(esc_id: str, card: dict, user: str = "U0OWNER") -> dict:
    button = next(e for b in card["blocks"] if b.get("type") == "actions" for e in b["elements"]
                  if e["action_id"] == "aop_approve")
    return payloads.message_click(user, "aop_approve", button["value"], "C0BENCH", card, "1.2.3",
                                  "https://hooks.invalid/r")


async def clicks(url: str, cards: dict[str, dict], per_second: float) -> list[float]:
    """One Approve a card, at per_second: the time to our HTTP answer of each."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def one(esc_id: str, card: dict) -> None:
            body = payloads.form_body(click_payload(esc_id, card))
            headers = payloads.signed_headers(SECRET, body, "application/x-www-form-urlencoded")
            t0 = time.perf_counter()
            resp = await http.post("/slack/events", content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                raise RuntimeError(f"click answered {resp.status_code}")
        tasks = []
        for esc_id, card in cards.items():
            tasks.append(asyncio.create_task(one(esc_id, card)))
            await asyncio.sleep(1 / per_second)
        await asyncio.gather(*tasks)
    return latencies


PROFILE_CLICKS = os.environ.get("BENCH_PROFILE_CLICKS")  # a path prefix: py-spy's raw stacks go there
PROFILE_INGEST = os.environ.get("BENCH_PROFILE_INGEST")  # the same, for the 16-concurrent ingest run


def profiler(bot, out: str, seconds: int) -> subprocess.Popen:
    """py-spy sampling the bot (and its children) for `seconds`, raw stacks per thread into `out`."""
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(bot.proc.pid),
                             "--duration", str(seconds), "--rate", "500", "--format", "raw", "--threads",
                             "--subprocesses", "--nonblocking", "--output", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_clicks(bot, cards: dict[str, dict], out: str, seconds: int = 20) -> None:
    """Click the (already decided) cards at 100/s for `seconds` while py-spy samples the bot. The ack
    path is the same for a decided card: the inbox row is written and acked; the apply says so later."""
    spy = profiler(bot, out, seconds)
    lat: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lat += asyncio.run(clicks(bot.url, cards, 100))
    spy.wait(60)
    progress(f"profiled {len(lat)} clicks: p50 {ms(pct(lat, 50))}, p99 {ms(pct(lat, 99))} -> {out}")


def waits(name: str, bot: Child, slack: SlackSide, headers: dict[str, str], rows: list[list[str]]) -> None:
    """What a person waits on, with nothing queued: time to page, clicks, long-poll wake."""
    sent: dict[str, float] = {}

    async def paced_signals(n: int, per_second: float) -> None:
        async with httpx.AsyncClient(base_url=bot.url, headers=headers, timeout=30) as http:
            async def one() -> None:
                resp = await http.post("/api/v1/escalations", json=SIGNAL)
                sent[resp.json()["id"]] = time.perf_counter()
            tasks = []
            for _ in range(n):
                tasks.append(asyncio.create_task(one()))
                await asyncio.sleep(1 / per_second)
            await asyncio.gather(*tasks)
    asyncio.run(paced_signals(120, 10))
    wait_until(lambda: all(e in slack.first_post for e in sent), 300, "every paced signal paged")
    to_page = [slack.first_post[e] - t for e, t in sent.items()]
    rows.append([f"time to page (201 → first `chat.postMessage`) at 10 signals/s, {name}", "—",
                 f"p50 {ms(pct(to_page, 50))}, p99 {ms(pct(to_page, 99))}"])
    progress(f"{name}: time to page measured")

    cards = wait_until(lambda: (c := slack.threads()) and all(e in c for e in sent) and c, 300, "thread cards")
    ids = list(sent)
    asyncio.run(clicks(bot.url, {ids[-1]: cards[ids[-1]]}, 100))  # warm-up: Bolt's first auth.test
    slack.delay_s = 0.3
    click_lat = asyncio.run(clicks(bot.url, {e: cards[e] for e in ids[:100]}, 100))
    slack.delay_s = 0.0

    def decided(esc_id: str) -> bool:
        return httpx.get(f"{bot.url}/api/v1/escalations/{esc_id}", headers=headers).json()["status"] == "approved"
    wait_until(lambda: all(decided(e) for e in ids[:100]), 120, "every click applied")
    rows.append([f"button click → our HTTP answer, 100 clicks/s, Slack answering after 300 ms, {name}",
                 "Slack allows 3,000 ms", f"p50 {ms(pct(click_lat, 50))}, p99 {ms(pct(click_lat, 99))}"])
    progress(f"{name}: clicks measured")
    if PROFILE_CLICKS:  # where an ack's time goes: py-spy on the bot while clicks keep coming
        profile_clicks(bot, {e: cards[e] for e in ids[:100]}, f"{PROFILE_CLICKS}.{name.lower()}")

    wakes = []
    for esc_id in ids[100:119]:
        async def poll_and_click(esc_id=esc_id) -> float:
            async with httpx.AsyncClient(base_url=bot.url, headers=headers, timeout=60) as http:
                poll = asyncio.create_task(http.get(f"/api/v1/escalations/{esc_id}", params={"wait": 30}))
                await asyncio.sleep(0.3)
                body = payloads.form_body(click_payload(esc_id, cards[esc_id]))
                t0 = time.perf_counter()
                await http.post("/slack/events", content=body,
                                headers=payloads.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
                view = (await poll).json()
                if view["status"] != "approved":
                    raise RuntimeError(f"long-poll returned {view['status']}")
                return time.perf_counter() - t0
        wakes.append(asyncio.run(poll_and_click()))
    rows.append([f"long-poll wake after the decision click, {name}", "HumanLayer polls every 3 s",
                 f"p50 {ms(pct(wakes, 50))}, p99 {ms(pct(wakes, 99))}"])
    progress(f"{name}: long-poll wake measured")



def run_backend(name: str, url: str, tmp: Path, rows: list[list[str]], people: bool = True) -> None:
    registry = tmp / "aops.yml"
    registry.write_text(REGISTRY)
    token = migrate_and_mint(url, registry)
    headers = {"Authorization": f"Bearer {token}"}
    slack = SlackSide()
    floor = Child([PY, "-m", "uvicorn", "bench.floor_app:app", "--port", "{port}", "--log-level", "warning"],
                  {"FLOOR_DATABASE_URL": url}, "/floor", tmp / f"floor-{name}.log")
    try:
        hammer_apart(floor.url, "/floor", {}, 200, 16)  # warm-up
        (floor_rps, floor_lat), floor_cpu = measured_cpu(
            floor.proc.pid, lambda: hammer_apart(floor.url, "/floor", {}, 2000, 16))
        if floor_cpu:
            progress(f"{name} floor: {floor_cpu}")
        _, floor_burst = hammer_apart(floor.url, "/floor", {}, 1000, 1000)
    finally:
        floor.stop()
    bot = Child([PY, "-m", "bot", "serve"], bot_env(url, registry, slack), "/readyz", tmp / f"serve-{name}.log")
    try:
        idle_rss = bot.rss_mb()
        if people:
            waits(name, bot, slack, headers, rows)
        hammer_apart(bot.url, "/api/v1/escalations", headers, 200, 16)  # warm-up
        paged_all(url)
        spy = profiler(bot, f"{PROFILE_INGEST}.{name.lower()}", 30) if PROFILE_INGEST else None
        (ours_rps, ours_lat), ours_cpu = measured_cpu(
            bot.proc.pid, lambda: hammer_apart(bot.url, "/api/v1/escalations", headers, 2000, 16),
            lambda: len(slack.ws.messages))
        if ours_cpu:
            progress(f"{name} aopbot: {ours_cpu}")
        if spy is not None:
            spy.wait(60)
        rows.append([f"`POST /api/v1/escalations`, 16 concurrent, {name}",
                     f"floor {floor_rps:,.0f} req/s (p99 {ms(pct(floor_lat, 99))})",
                     f"{ours_rps:,.0f} req/s (**{ours_rps / floor_rps:.2f}×**), p50 {ms(pct(ours_lat, 50))}, "
                     f"p99 {ms(pct(ours_lat, 99))}"])
        if name == "PostgreSQL":
            paged_all(url)
            _, burst_lat = hammer_apart(bot.url, "/api/v1/escalations", headers, 1000, 1000)
            rows.append(["1,000 concurrent signals, PostgreSQL",
                         f"floor p50 {ms(pct(floor_burst, 50))}, p99 {ms(pct(floor_burst, 99))}",
                         f"p50 {ms(pct(burst_lat, 50))}, p99 {ms(pct(burst_lat, 99))}"])
        rows.append([f"RSS of `serve`, idle / after the ingest run, {name}", "—",
                     f"{idle_rss:.0f} MB / {bot.rss_mb():.0f} MB"])
        progress(f"{name}: ingest measured")
    finally:
        bot.stop()
        slack.server.stop()


def serve_channels(tmp: Path, n: int, slack: SlackSide, name: str) -> tuple[Child, dict[str, str]]:
    """A fresh PostgreSQL database and `aopbot serve` with channel_registry(n): (the bot, auth headers)."""
    registry = tmp / f"aops-{name}.yml"
    registry.write_text(channel_registry(n))
    reset_pg(PG)
    token = migrate_and_mint(PG, registry, tuple(f"bench{i:02d}" for i in range(1, n + 1)))
    bot = Child([PY, "-m", "bot", "serve"], bot_env(PG, registry, slack), "/readyz", tmp / f"serve-{name}.log")
    return bot, {"Authorization": f"Bearer {token}"}


def signal_to(i: int) -> dict:
    """SIGNAL for process bench{i:02d}."""
    return {**SIGNAL, "process_id": f"bench{i:02d}"}


def throttled(tmp: Path, rows: list[list[str]]) -> None:
    """Paging throughput with THROTTLED channels each allowed one message a second: 15 escalations a
    channel (a page is two channel posts, the message and its thread card: ~30 s of work for each
    channel), sent as fast as the API takes them; channel posts a second over the middle 80 % of them
    (the first and last tenth are the ingest and the channels finishing)."""
    slack = SlackSide(throttle_s=1.0)
    bot, headers = serve_channels(tmp, THROTTLED, slack, "throttled")
    try:
        n = 15 * THROTTLED
        asyncio.run(hammer(bot.url, "/api/v1/escalations", headers, n, 16,
                           body=lambda i: signal_to(i % THROTTLED + 1)))
        wait_until(lambda: len(slack.channel_posts) >= 2 * n, 300, "every throttled page posted")
        times = sorted(t for _, t in slack.channel_posts)
        lo, hi = len(times) // 10, len(times) - 1 - len(times) // 10
        rate = (hi - lo) / (times[hi] - times[lo])
        rows.append([f"paging, {THROTTLED} channels each throttled to 1 msg/s (beyond it 429, Retry-After 1), "
                     f"{n} escalations, PostgreSQL", f"Slack allows {THROTTLED} msg/s",
                     f"{rate:.1f} msg/s of the {THROTTLED} allowed (**{rate / THROTTLED:.0%}**), "
                     f"{slack.throttled:,} 429s answered, all {2 * n} posts in {times[-1] - times[0]:.0f} s"])
        progress("throttled channels measured")
    finally:
        bot.stop()
        slack.server.stop()


def recover(tmp: Path, rows: list[list[str]]) -> None:
    """Channel C0BENCH01 answers seven 429s (Retry-After 1) then a 500 to chat.postMessage: from the
    signal's 201 to the first post there. Meanwhile C0BENCH02 gets a signal a second: its time to page."""
    slack = SlackSide()
    bot, headers = serve_channels(tmp, 2, slack, "recover")
    try:
        asyncio.run(hammer(bot.url, "/api/v1/escalations", headers, 5, 1, body=lambda i: signal_to(2)))  # warm-up
        wait_until(lambda: len(slack.first_post) == 5, 60, "the warm-up pages")
        slack.refusals["C0BENCH01"] = [RATE_LIMITED] * 7 + [(500, {}, {"ok": False, "error": "internal_error"})]
        sent: dict[str, float] = {}

        def signal(i: int) -> str:
            resp = httpx.post(f"{bot.url}/api/v1/escalations", json=signal_to(i), headers=headers, timeout=30)
            if resp.status_code != 201:
                raise RuntimeError(f"signal answered {resp.status_code} {resp.text[:200]}")
            sent[resp.json()["id"]] = time.perf_counter()
            return resp.json()["id"]

        refused = signal(1)
        others = []
        for _ in range(10):
            time.sleep(1)
            others.append(signal(2))
        wait_until(lambda: refused in slack.first_post, 120, "the refused channel's page")
        if slack.refusals["C0BENCH01"]:
            raise RuntimeError("the bot did not try through every refusal")
        recovered = slack.first_post[refused] - sent[refused]
        wait_until(lambda: all(e in slack.first_post for e in others), 60, "the other channel's pages")
        to_page = [slack.first_post[e] - sent[e] for e in others]
        rows.append(["recovery after seven 429s (Retry-After 1) and a 500 on one channel: 201 → first post there; "
                     "another channel's time to page meanwhile (a signal a second), PostgreSQL",
                     "Retry-After total + 5 s: ≤ 13 s",
                     f"{recovered:.1f} s; the other channel: p50 {ms(pct(to_page, 50))}, worst {ms(max(to_page))}"])
        progress("recovery measured")
    finally:
        bot.stop()
        slack.server.stop()


def progress(what: str) -> None:
    print(f"[bench_wait] {what}", file=sys.stderr, flush=True)


def outbox_claim(rows: list[list[str]]) -> None:
    """Outbox.claim with 100,000 pending rows over 70,000 ordering keys (one channel each)."""
    from bot.delivery.outbox import Outbox
    from bot.ops.db import Database
    from bot.ops.migrate import upgrade

    reset_pg(PG)
    upgrade(PG)
    engine = create_engine(PG)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO outbox (kind, ordering_key, payload, status, attempts, next_attempt_at, created_at)
            SELECT 'page', 'C' || (g % 70000), '{}'::json, 'pending', 0, now() - interval '1 minute', now()
            FROM generate_series(1, 100000) g"""))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE outbox")
    engine.dispose()
    db = Database(PG)
    ob = Outbox(db, worker_id="bench")
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        got = ob.claim(20)
        times.append(time.perf_counter() - t0)
        if len(got) != 20:
            raise RuntimeError(f"claimed {len(got)}")
    db.dispose()
    rows.append(["outbox claim, 100,000 pending rows over 70,000 keys, PostgreSQL", "—",
                 f"median {ms(statistics.median(times[1:]))}, worst {ms(max(times[1:]))} (20 rows a claim)"])


def machine() -> str:
    cpus = os.cpu_count()
    mem = next((int(line.split()[1]) // (1024 * 1024) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    engine = create_engine(PG)
    with engine.connect() as conn:
        pg = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    return f"{cpus} vCPU, {mem} GB RAM, Python {platform.python_version()}, PostgreSQL {pg} on the same host"


def main() -> int:
    if sys.argv[1:2] == ["--hammer"]:  # the load generator, run apart by hammer_apart()
        job = json.loads(sys.argv[2])
        args = (job["url"], job["path"], job["headers"], job["n"])
        rps, latencies = asyncio.run(burst(*args) if job["concurrency"] == job["n"] else
                                     hammer(*args, job["concurrency"]))
        print(json.dumps({"rps": rps, "latencies": latencies}))
        return 0
    rows: list[list[str]] = []
    started = time.perf_counter()
    parts = ["postgres", "sqlite", "throttled", "recover", "claim", "ingest"]
    only = "claim" if "--claim-only" in sys.argv else None
    if "--only" in sys.argv[:-1]:
        only = sys.argv[sys.argv.index("--only") + 1]
    if only is not None:
        unknown = set(only.split(",")) - set(parts)
        if unknown:
            print(f"--only: no part {', '.join(sorted(unknown))} (parts: {', '.join(parts)})", file=sys.stderr)
            return 2
        parts = [p for p in parts if p in only.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "postgres" in parts:
            reset_pg(PG)
            run_backend("PostgreSQL", PG, tmp, rows)
        elif "ingest" in parts and only is not None:  # just the floor and the ingest rows, PostgreSQL
            reset_pg(PG)
            run_backend("PostgreSQL", PG, tmp, rows, people=False)
        if "sqlite" in parts:
            run_backend("SQLite", f"sqlite:///{tmp / 'bench.db'}", tmp, rows)
        if "throttled" in parts:
            throttled(tmp, rows)
        if "recover" in parts:
            recover(tmp, rows)
    if "claim" in parts:
        outbox_claim(rows)
    table = ["| measure | floor / peer | aopbot |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    report = "\n".join([
        "```sh", ".venv/bin/python bench/bench_wait.py --write   # or: make bench", "```", "",
        f"Machine: {machine()}; the load generator and the Slack stand-in run on the same host.",
        f"Whole run: {time.perf_counter() - started:.0f} s.", "", *table])
    print(report)
    if "--write" in sys.argv and only is None:
        doc = ROOT / "docs" / "BENCHMARKS.md"
        body = doc.read_text()
        start, end = "<!-- bench_wait:start -->", "<!-- bench_wait:end -->"
        if start in body:
            body = body[:body.index(start) + len(start)] + "\n" + report + "\n" + body[body.index(end):]
        else:
            body += f"\n## Where people wait\n\n{start}\n{report}\n{end}\n"
        doc.write_text(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
