"""A Slack workspace in memory that answers the Web API methods aopbot uses, the way Slack does.

One implementation for two users: the sandbox (Slack without a workspace, served by the bot itself)
and the test suite's stand-in (served on its own port). It records every call, keeps each message's
current content (posts and updates applied), and enforces the rules the bot must respect: auth,
Block Kit limits, escaped markup, trigger ids that expire after 3 s, chat.update only on the bot's
own messages, not_in_channel. "Struggling" makes it answer 429 with Retry-After and some 500s.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.sandbox import limits
from bot.sandbox.records import BOT_USER, Call, Channel, Message, Modal, User, dm_channel

TRIGGER_TTL_S = 3.0
Answer = tuple[int, dict[str, str], dict[str, Any]]














class SlackWorkspace:
    def __init__(self, bot_token: str | None = None, auto_join: bool = True, seed: int | None = None,
                 team_url: str = "https://sandbox.slack.invalid/") -> None:
        self.team_url = team_url  # where permalinks point (the sandbox: its own page)
        # bot_token None accepts any xoxb token (tests); the sandbox sets its own.
        self.bot_token = bot_token
        # auto_join: a channel nobody declared exists with the bot in it (tests post anywhere);
        # the sandbox declares its channels and answers channel_not_found for the rest.
        self.auto_join = auto_join
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.violations: list[str] = []
        self.users: dict[str, User] = {}
        self.users_by_email: dict[str, str] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.group_handles: dict[str, str] = {}
        self.channels: dict[str, Channel] = {}
        self.home: dict[str, dict[str, Any]] = {}
        self.modals: dict[str, Modal] = {}
        self.struggling = False
        # fail(method, args) -> None to answer normally, or (status, headers, body) to answer instead.
        self.fail: Callable[[str, dict[str, Any]], Answer | None] | None = None
        self.socket_mode = None  # a Socket Mode stand-in, when a test runs the app in Socket Mode
        self.version = 0  # bumped on every change people could see (the sandbox page polls it)
        self._triggers: dict[str, tuple[str, float]] = {}
        self._response_urls: dict[str, tuple[str, str, str | None]] = {}
        self._last_us = 0
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)  # noqa: S311 - failure injection, not security
        self._lock = threading.RLock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.violations.clear()
            self.users.clear()
            self.users_by_email.clear()
            self.usergroups.clear()
            self.group_handles.clear()
            self.channels.clear()
            self.home.clear()
            self.modals.clear()
            self._triggers.clear()
            self._response_urls.clear()
            self.struggling = False
            self.fail = None
            self._changed()

    # -- people and places -------------------------------------------------------------------------
    def add_user(self, user_id: str, name: str, email: str | None = None, deleted: bool = False) -> User:
        with self._lock:
            user = self.users[user_id] = User(user_id, name, email, deleted)
            if email:
                self.users_by_email[email] = user_id
            self._changed()
            return user

    def add_group(self, group_id: str, handle: str, members: list[str]) -> None:
        with self._lock:
            self.usergroups[group_id] = list(members)
            self.group_handles[group_id] = handle

    def add_channel(self, channel_id: str, name: str, bot_member: bool = True) -> Channel:
        with self._lock:
            ch = self.channels[channel_id] = Channel(channel_id, name, {BOT_USER} if bot_member else set())
            self._changed()
            return ch

    def name_of(self, some_id: str) -> str:
        if some_id in self.users:
            return self.users[some_id].name
        if some_id in self.channels:
            return self.channels[some_id].name
        return self.group_handles.get(some_id, some_id)

    # -- what Slack hands the app with a request ---------------------------------------------------
    def issue_trigger(self, user: str) -> str:
        """A trigger_id for one interaction: views.open accepts it once, within 3 s."""
        trigger = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(8)}"
        with self._lock:
            self._triggers[trigger] = (user, time.monotonic())
        return trigger

    def issue_response_url(self, base: str, channel: str, user: str, thread_ts: str | None = None) -> str:
        key = secrets.token_hex(8)
        with self._lock:
            self._response_urls[key] = (channel, user, thread_ts)
        return f"{base.rstrip('/')}/response/{key}"

    # -- the Web API -------------------------------------------------------------------------------
    def _changed(self) -> None:
        self.version += 1

    def _next_ts(self) -> str:
        """Slack's message ids: the post time in microseconds, unique and increasing in a channel."""
        with self._lock:
            self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
            return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def answer(self, method: str, args: dict[str, Any], auth: str) -> Answer:
        """One Web API call: (HTTP status, headers, JSON body), as Slack would answer it."""
        call = Call(method, args)
        injected = self.fail(method, args) if self.fail is not None else None
        if injected is None and self.struggling and method != "apps.connections.open":
            injected = self._struggle()
        if injected is not None:
            status, headers, body = injected
            call.ok, call.error, call.status = False, body.get("error", str(status)), status
            with self._lock:
                self.calls.append(call)
            return status, headers, body
        if method == "apps.connections.open":
            if not auth.startswith("Bearer xapp-") or self.socket_mode is None:
                return self._record(call, {"ok": False, "error": "invalid_auth"})
            return self._record(call, {"ok": True, "url": self.socket_mode.url})
        if not auth.startswith("Bearer "):
            return self._record(call, {"ok": False, "error": "not_authed"})
        token = auth.removeprefix("Bearer ")
        if not token.startswith("xoxb-") or (self.bot_token is not None and token != self.bot_token):
            return self._record(call, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._record(call, {"ok": False, "error": "unknown_method"})
        with self._lock:
            body = handler(args)
        return self._record(call, body)

    def respond(self, key: str, args: dict[str, Any]) -> Answer:
        """A POST to a response_url: shown to the person who ran the command (or to the channel)."""
        call = Call("response_url", args, to=key)
        with self._lock:
            where = self._response_urls.get(key)
        if where is not None:
            self.show_reply(*where, args)
        return self._record(call, {"ok": True})

    def show_reply(self, channel: str, user: str, thread_ts: str | None, args: dict[str, Any]) -> None:
        """An answer to a person's command (the ack's body or a response_url POST): to them only,
        unless it says in_channel."""
        if not (args.get("text") or args.get("blocks")):
            return
        with self._lock:
            ephemeral = args.get("response_type") != "in_channel"
            self._store(channel, args, thread_ts, ephemeral_to=user if ephemeral else None)

    def _struggle(self) -> Answer | None:
        roll = self._rng.random()
        if roll < 0.25:
            return 429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}
        if roll < 0.30:
            return 500, {}, {"ok": False, "error": "internal_error"}
        return None

    def _record(self, call: Call, body: dict[str, Any]) -> Answer:
        call.ok, call.error = bool(body.get("ok")), body.get("error")
        with self._lock:
            self.calls.append(call)
        return 200, {}, body

    def _invalid(self, method: str, problems: list[str]) -> dict[str, Any] | None:
        if not problems:
            return None
        self.violations += [f"{method}: {p}" for p in problems]
        return {"ok": False, "error": "invalid_blocks", "errors": problems}

    def _channel_for_post(self, channel: str) -> tuple[str | None, str | None]:
        """(channel id to post in, error): users get their DM; the bot must be in a channel."""
        if channel[:1] in ("U", "W"):
            return dm_channel(channel), None
        if channel[:1] == "D":
            return channel, None
        ch = self.channels.get(channel)
        if ch is None:
            if not self.auto_join:
                return None, "channel_not_found"
            ch = self.channels[channel] = Channel(channel, channel.lower(), {BOT_USER})
        if BOT_USER not in ch.members:
            return None, "not_in_channel"
        return channel, None

    def _store(self, channel: str, args: dict[str, Any], thread_ts: str | None, ephemeral_to: str | None = None,
               ts: str | None = None) -> Message:
        ts = ts or self._next_ts()
        metadata = args.get("metadata") if isinstance(args.get("metadata"), dict) else None
        msg = Message(channel, ts, args.get("text", "") or "", args.get("blocks") or [], thread_ts,
                      ephemeral_to=ephemeral_to, metadata=metadata)
        self.messages[(channel, ts)] = msg
        self._changed()
        return msg

    def m_auth_test(self, args):
        return {"ok": True, "user_id": BOT_USER, "bot_id": "BBOT", "team_id": "T1",
                "url": self.team_url}

    def _post(self, method: str, args: dict[str, Any], ephemeral_to: str | None = None
              ) -> tuple[Message | None, dict[str, Any] | None]:
        """(the stored message, None), or (None, Slack's refusal): Block Kit and markup first, then
        whether the bot may post where it asked."""
        bad = self._invalid(method, limits.check_message(args))
        if bad:
            return None, bad
        channel, error = self._channel_for_post(args["channel"])
        if error:
            return None, {"ok": False, "error": error}
        return self._store(channel, args, args.get("thread_ts"), ephemeral_to=ephemeral_to), None

    def m_chat_postMessage(self, args):
        msg, refused = self._post("chat.postMessage", args)
        if refused:
            return refused
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "message": {"text": msg.text, "ts": msg.ts}}

    def m_chat_update(self, args):
        bad = self._invalid("chat.update", limits.check_message(args))
        if bad:
            return bad
        msg = self.messages.get((args["channel"], args["ts"]))
        if msg is None or msg.ephemeral_to:
            return {"ok": False, "error": "message_not_found"}
        if msg.user != BOT_USER:
            return {"ok": False, "error": "cant_update_message"}
        msg.history.append({"text": msg.text, "blocks": msg.blocks})
        msg.text, msg.blocks = args.get("text", msg.text), args.get("blocks", msg.blocks)
        self._changed()
        return {"ok": True, "channel": args["channel"], "ts": args["ts"]}

    def m_chat_postEphemeral(self, args):
        msg, refused = self._post("chat.postEphemeral", args, ephemeral_to=args.get("user"))
        return refused or {"ok": True, "message_ts": msg.ts}

    def m_chat_getPermalink(self, args):
        ts = args["message_ts"].replace(".", "")
        return {"ok": True, "channel": args["channel"],
                "permalink": f"{self.team_url.rstrip('/')}/archives/{args['channel']}/p{ts}"}

    def m_views_open(self, args):
        view = args.get("view") or {}
        bad = self._invalid("views.open", limits.check_view(view))
        if bad:
            return bad
        issued = self._triggers.pop(args.get("trigger_id", ""), None)
        if issued is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        user, at = issued
        if time.monotonic() - at > TRIGGER_TTL_S:
            return {"ok": False, "error": "expired_trigger_id"}
        view_id = f"V{next(self._ids):08d}"
        self.modals[view_id] = Modal(view_id, user, view)
        self._changed()
        return {"ok": True, "view": {**view, "id": view_id}}

    def m_views_publish(self, args):
        view = args.get("view") or {}
        bad = self._invalid("views.publish", limits.check_view(view))
        if bad:
            return bad
        self.home[args["user_id"]] = view
        self._changed()
        return {"ok": True, "view": {**view, "id": "VHOME" + args["user_id"]}}

    def m_users_info(self, args):
        user = self.users.get(args.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user.id, "name": user.name, "real_name": user.name,
                                     "deleted": user.deleted, "is_bot": user.is_bot,
                                     "profile": {"display_name": user.name, "real_name": user.name}}}

    def m_users_lookupByEmail(self, args):
        uid = self.users_by_email.get(args.get("email", ""))
        return {"ok": True, "user": {"id": uid}} if uid else {"ok": False, "error": "users_not_found"}

    def m_usergroups_users_list(self, args):
        users = self.usergroups.get(args.get("usergroup", ""))
        return {"ok": True, "users": users} if users is not None else {"ok": False, "error": "no_such_subteam"}

    def m_usergroups_list(self, args):
        return {"ok": True, "usergroups": [{"id": gid, "handle": self.group_handles.get(gid, gid.lower()),
                                            "name": self.group_handles.get(gid, gid)} for gid in self.usergroups]}

    def m_conversations_open(self, args):
        users = args.get("users", "")
        return {"ok": True, "channel": {"id": dm_channel(users.split(",")[0])}}

    def _readable(self, channel: str) -> str | None:
        """Why the bot may not read this channel's history, or None."""
        ch = self.channels.get(channel)
        if channel[:1] == "D":
            return None
        if ch is None:
            return None if self.auto_join else "channel_not_found"
        return None if BOT_USER in ch.members else "not_in_channel"

    def _listing(self, msgs: list[Message], args: dict[str, Any]) -> dict[str, Any]:
        """A page of messages as conversations.history/replies answer: cursor-paged by `limit`."""
        start = int(args.get("cursor") or 0)
        limit = max(1, min(int(args.get("limit") or 100), 1000))
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        page = msgs[start:start + limit]
        out = []
        for m in page:
            d: dict[str, Any] = {"type": "message", "user": m.user, "text": m.text, "ts": m.ts}
            if m.user == BOT_USER:
                d["bot_id"] = "BBOT"  # as Slack marks an app's own posts
            if m.thread_ts:
                d["thread_ts"] = m.thread_ts
            if with_meta and m.metadata:
                d["metadata"] = m.metadata
            out.append(d)
        more = start + limit < len(msgs)
        return {"ok": True, "messages": out, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def m_conversations_history(self, args):
        channel = args.get("channel", "")
        refused = self._readable(channel)
        if refused:
            return {"ok": False, "error": refused}
        oldest = float(args.get("oldest") or 0)
        msgs = [m for m in self.channel_messages(channel) if not m.thread_ts or m.thread_ts == m.ts]
        return self._listing([m for m in reversed(msgs) if float(m.ts) >= oldest], args)  # newest first

    def m_conversations_replies(self, args):
        channel, ts = args.get("channel", ""), args.get("ts", "")
        refused = self._readable(channel)
        if refused:
            return {"ok": False, "error": refused}
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        msgs = [m for m in self.channel_messages(channel) if m.ts == ts or m.thread_ts == ts]
        return self._listing(msgs, args)  # the parent first, then replies oldest first

    # -- what tests and the page read --------------------------------------------------------------
    def calls_to(self, method: str, ok: bool | None = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def responses_to(self, response_url: str) -> list[dict[str, Any]]:
        """What the app posted to one response_url this workspace issued, oldest first."""
        key = response_url.rstrip("/").rpartition("/")[2]
        return [c.args for c in self.calls_to("response_url") if c.to == key]

    def channel_messages(self, channel: str) -> list[Message]:
        with self._lock:
            return [m for (c, _), m in sorted(self.messages.items(), key=lambda kv: kv[0][1])
                    if c == channel and m.ephemeral_to is None]

    def message(self, channel: str, ts: str) -> Message:
        with self._lock:
            return self.messages[(channel, ts)]




