"""A local stand-in for the Slack Web API, on 127.0.0.1, over real HTTP.

It answers the methods aopbot uses the way Slack does, records every call, keeps each message's
current content (posts and updates applied), and checks what Slack itself would refuse or what must
never reach people: Block Kit limits, mass mentions, link_names. Failures (429 with Retry-After,
5xx, permanent errors) can be injected per call.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MASS_MENTION = re.compile(r"<!(channel|here|everyone)\b")
# Markup aopbot itself may produce: user and group mentions of registry people, dates, links.
ALLOWED_MARKUP = re.compile(r"<(@[UW][A-Z0-9]+|#[CG][A-Z0-9]+|!subteam\^S[A-Z0-9]+|!date\^[^>]+|https?://[^>]+)>")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    ok: bool = True
    error: str | None = None
    status: int = 200


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _texts(obj: Any) -> list[str]:
    """Every text string in a message or block tree."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "text" and isinstance(v, str):
                out.append(v)
            else:
                out += _texts(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _texts(v)
    return out


def check_blocks(blocks: list[dict[str, Any]], max_blocks: int = 50) -> list[str]:
    """What Slack would refuse as invalid_blocks (the limits aopbot must respect)."""
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks > {max_blocks}")
    for i, b in enumerate(blocks):
        t = b.get("type")
        if t == "section":
            text = (b.get("text") or {}).get("text", "")
            if len(text) > 3000:
                problems.append(f"block {i}: section text {len(text)} > 3000")
            fields = b.get("fields") or []
            if len(fields) > 10:
                problems.append(f"block {i}: {len(fields)} fields > 10")
            for f in fields:
                if len(f.get("text", "")) > 2000:
                    problems.append(f"block {i}: field text {len(f['text'])} > 2000")
            if not text and not fields:
                problems.append(f"block {i}: empty section")
        elif t == "header":
            if len(b["text"]["text"]) > 150:
                problems.append(f"block {i}: header > 150")
        elif t == "context":
            els = b.get("elements") or []
            if len(els) > 10:
                problems.append(f"block {i}: context with {len(els)} elements > 10")
            for e in els:
                if len(e.get("text", "")) > 2000:
                    problems.append(f"block {i}: context text > 2000")
        elif t == "actions":
            els = b.get("elements") or []
            if len(els) > 25:
                problems.append(f"block {i}: {len(els)} actions > 25")
            for e in els:
                if len(e["text"]["text"]) > 75:
                    problems.append(f"block {i}: button text > 75")
                if len(e.get("value", "")) > 2000:
                    problems.append(f"block {i}: button value > 2000")
                if len(e.get("action_id", "")) > 255:
                    problems.append(f"block {i}: action_id > 255")
    return problems


def check_markup(texts: list[str]) -> list[str]:
    problems = []
    for t in texts:
        if MASS_MENTION.search(t):
            problems.append(f"mass mention in {t[:80]!r}")
        stripped = ALLOWED_MARKUP.sub("", t)
        if "<" in stripped or ">" in stripped:
            problems.append(f"unescaped < or > in {t[:120]!r}")
    return problems


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.violations: list[str] = []
        self.users_by_email: dict[str, str] = {}
        self.usergroups: dict[str, list[str]] = {}
        # fail(method, args) -> None to answer normally, or (status, headers, body) to answer instead.
        self.fail: Callable[[str, dict[str, Any]], tuple[int, dict[str, str], dict[str, Any]] | None] | None = None
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.on_call: Callable[[Call], None] | None = None
        self.socket_mode = None  # a SocketModeStub, when a test runs the app in Socket Mode

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> SlackStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                self._handle()

            def do_POST(self):  # noqa: N802
                self._handle()

            def _handle(self):
                parts = urlsplit(self.path)
                method = parts.path.rsplit("/", 1)[-1]
                if parts.path.startswith("/response/"):  # a command's or action's response_url
                    method = "response_url"
                args: dict[str, Any] = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type", "")
                if raw:
                    if "json" in ctype:
                        args.update(json.loads(raw))
                    else:
                        args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
                for key in ("blocks", "view", "attachments"):
                    if isinstance(args.get(key), str):
                        try:
                            args[key] = json.loads(args[key])
                        except ValueError:
                            pass
                auth = self.headers.get("Authorization", "")
                status, headers, body = stub.answer(method, args, auth)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.violations.clear()
            self.users_by_email.clear()
            self.usergroups.clear()
            self.fail = None
            self.on_call = None

    # -- behaviour -----------------------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def answer(self, method: str, args: dict[str, Any], auth: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        call = Call(method, args)
        if self.fail is not None:
            injected = self.fail(method, args)
            if injected is not None:
                status, headers, body = injected
                call.ok, call.error, call.status = False, body.get("error", str(status)), status
                with self._lock:
                    self.calls.append(call)
                return status, headers, body
        if method == "response_url":
            return self._record(call, {"ok": True})
        if method == "apps.connections.open":
            if not auth.startswith("Bearer xapp-") or self.socket_mode is None:
                return self._record(call, {"ok": False, "error": "invalid_auth"})
            return self._record(call, {"ok": True, "url": self.socket_mode.url})
        if not auth.startswith("Bearer xox"):
            return self._record(call, {"ok": False, "error": "not_authed"})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._record(call, {"ok": False, "error": "unknown_method"})
        return self._record(call, handler(args))

    def _record(self, call: Call, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        call.ok, call.error = bool(body.get("ok")), body.get("error")
        with self._lock:
            self.calls.append(call)
        if self.on_call:
            self.on_call(call)
        return 200, {}, body

    def _check_message(self, args: dict[str, Any], max_blocks: int = 50) -> list[str]:
        problems = []
        if args.get("link_names") not in (None, False, "false", "0", 0):
            problems.append("link_names set")
        blocks = args.get("blocks") or []
        problems += check_blocks(blocks, max_blocks)
        texts = _texts(blocks) + ([args["text"]] if isinstance(args.get("text"), str) else [])
        problems += check_markup(texts)
        if len(args.get("text") or "") > 40000:
            problems.append("text > 40000")
        return problems

    def _invalid(self, method: str, problems: list[str]) -> dict[str, Any] | None:
        if not problems:
            return None
        with self._lock:
            self.violations += [f"{method}: {p}" for p in problems]
        return {"ok": False, "error": "invalid_blocks", "errors": problems}

    def m_auth_test(self, args):
        return {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "url": "https://stub.slack.com/"}

    def m_chat_postMessage(self, args):
        bad = self._invalid("chat.postMessage", self._check_message(args))
        if bad:
            return bad
        channel = args["channel"]
        if channel[:1] in ("U", "W"):
            channel = "D" + channel[1:]
        ts = self._next_ts()
        msg = Message(channel, ts, args.get("text", ""), args.get("blocks") or [], args.get("thread_ts"))
        with self._lock:
            self.messages[(channel, ts)] = msg
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": msg.text, "ts": ts}}

    def m_chat_update(self, args):
        bad = self._invalid("chat.update", self._check_message(args))
        if bad:
            return bad
        key = (args["channel"], args["ts"])
        with self._lock:
            msg = self.messages.get(key)
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.history.append({"text": msg.text, "blocks": msg.blocks})
            msg.text, msg.blocks = args.get("text", msg.text), args.get("blocks", msg.blocks)
        return {"ok": True, "channel": args["channel"], "ts": args["ts"]}

    def m_chat_postEphemeral(self, args):
        bad = self._invalid("chat.postEphemeral", self._check_message(args))
        return bad or {"ok": True, "message_ts": self._next_ts()}

    def m_chat_getPermalink(self, args):
        ts = args["message_ts"].replace(".", "")
        return {"ok": True, "channel": args["channel"],
                "permalink": f"https://stub.slack.com/archives/{args['channel']}/p{ts}"}

    def m_views_open(self, args):
        view = args.get("view") or {}
        bad = self._invalid("views.open", check_blocks(view.get("blocks") or [], max_blocks=100)
                            + (["title > 24"] if len(view.get("title", {}).get("text", "")) > 24 else []))
        return bad or {"ok": True, "view": {"id": "V" + self._next_ts().replace(".", "")}}

    def m_views_publish(self, args):
        view = args.get("view") or {}
        bad = self._invalid("views.publish", check_blocks(view.get("blocks") or [], max_blocks=100))
        return bad or {"ok": True}

    def m_users_lookupByEmail(self, args):
        uid = self.users_by_email.get(args.get("email", ""))
        return {"ok": True, "user": {"id": uid}} if uid else {"ok": False, "error": "users_not_found"}

    def m_usergroups_users_list(self, args):
        users = self.usergroups.get(args.get("usergroup", ""))
        return {"ok": True, "users": users} if users is not None else {"ok": False, "error": "no_such_subteam"}

    def m_conversations_open(self, args):
        users = args.get("users", "")
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0][1:]}}

    # -- queries for tests ----------------------------------------------------------------------------
    def calls_to(self, method: str, ok: bool | None = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def channel_messages(self, channel: str) -> list[Message]:
        with self._lock:
            return [m for (c, _), m in sorted(self.messages.items(), key=lambda kv: kv[0][1]) if c == channel]

    def message(self, channel: str, ts: str) -> Message:
        with self._lock:
            return self.messages[(channel, ts)]


def message_text(msg: Message | dict[str, Any]) -> str:
    """All the text a person sees in a message (top-level text excluded), joined."""
    blocks = msg.blocks if isinstance(msg, Message) else msg.get("blocks", [])
    return "\n".join(_texts(blocks))


def buttons(msg: Message) -> list[str]:
    return [e["action_id"] for b in msg.blocks if b.get("type") == "actions" for e in b.get("elements", [])]
