"""The sandbox's HTTP side: Slack's Web API (for the bot) and the /sandbox page's endpoints (for people).

A person's action on the page becomes the request Slack would send (a signed slash command, button
click, modal submission or event) and goes to /slack/events over HTTP, the path real Slack takes;
what the bot answers and posts comes back through the Web API into the workspace the page shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from bot.domain import escalation_view
from bot.domain.changelog import row_to_entry
from bot.domain.models import ChangelogEntry, Escalation
from bot.domain.registry import Registry
from bot.ops.config import Settings
from bot.ops.db import Database
from bot.sandbox import demo, payloads, people, samples
from bot.sandbox.records import BOT_USER, dm_channel
from bot.sandbox.transport import parse_call, route
from bot.sandbox.workspace import SlackWorkspace

log = logging.getLogger("aopbot.sandbox")
PAGE = Path(__file__).parent / "static" / "sandbox.html"
DEMO_TOKEN_NAME = "sandbox-demo"  # noqa: S105 - a token's name, not a secret
AGENT_PANEL_SIZE = 8


class Act(BaseModel):
    """One action of the person at the page."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    as_user: str = Field(alias="as", pattern=r"^[UW][A-Z0-9]{1,30}$")
    type: str = Field(pattern=r"^(button|command|view_submission|view_closed|home_opened)$")
    channel: str | None = None
    ts: str | None = None
    view: str | None = None
    view_id: str | None = None
    action_id: str = ""
    block_id: str = "decide"
    value: str = ""
    text: str = ""
    values: dict[str, Any] = {}


class Sandbox:
    def __init__(self, settings: Settings, db: Database, registry: Registry, base_url: str):
        self.settings, self.db, self.registry = settings, db, registry
        self.base = base_url.rstrip("/")  # this process's own listener
        self.ws = SlackWorkspace(bot_token=settings.bot_token, auto_join=False,
                                 team_url=f"{self.base}/sandbox/")
        self.cast = people.populate(self.ws, registry.all(), settings.aop_digest_channel)
        self._demo: tuple[str, set[str]] | None = None
        # No keep-alive: a pooled connection to ourselves would hold up the server's graceful shutdown.
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    # -- the demo agent ----------------------------------------------------------------------------
    def demo_token(self, process_id: str) -> str:
        """A token for the sample signals, scoped to every process; earlier demo tokens are revoked."""
        if self._demo is None or process_id not in self._demo[1]:
            ids = [p.id for p in self.registry.all()]
            self._demo = (demo.mint_token(self.db, ids, DEMO_TOKEN_NAME), set(ids))
        return self._demo[0]

    async def send_sample(self, key: str) -> dict[str, Any]:
        offered = {s.key: (s, p) for s, p in samples.available(self.registry.all())}
        if key not in offered:
            raise HTTPException(404, f"no sample {key!r}; the registry offers {sorted(offered)}")
        sample, proc = offered[key]
        token = self.demo_token(proc.id)
        resp = await self.http.post(f"{self.base}/api/v1/escalations", json=samples.signal_body(sample, proc),
                                    headers={"Authorization": f"Bearer {token}"})
        return {"ok": resp.status_code < 300, "status": resp.status_code, "body": resp.json()}

    # -- acting as Slack ---------------------------------------------------------------------------
    async def _to_bot(self, body: str, content_type: str) -> httpx.Response:
        headers = payloads.signed_headers(self.settings.signing_secret or "", body, content_type)
        return await self.http.post(f"{self.base}/slack/events", content=body.encode(), headers=headers)

    def _message(self, channel: str | None, ts: str | None):
        try:
            return self.ws.message(channel or "", ts or "")
        except KeyError:
            raise HTTPException(404, "no such message") from None

    async def act(self, act: Act) -> dict[str, Any]:
        user, ws = act.as_user, self.ws
        api = f"{self.base}/sandbox/api"
        if act.type == "home_opened":
            resp = await self._to_bot(payloads.event_body(payloads.app_home_opened(user)), "application/json")
            return {"ok": resp.status_code == 200, "status": resp.status_code}
        if act.type == "view_closed":
            with ws._lock:
                ws.modals.pop(act.view_id or "", None)
                ws.version += 1
            return {"ok": True, "status": 200}
        trigger = ws.issue_trigger(user)
        if act.type == "command":
            channel = act.channel or dm_channel(user)
            response_url = ws.issue_response_url(api, channel, user)
            text = act.text.strip().removeprefix("/aop").strip()
            resp = await self._to_bot(payloads.slash_command(user, text, channel, response_url, trigger,
                                                             ws.name_of(channel)), "application/x-www-form-urlencoded")
            if resp.status_code == 200 and resp.content:  # Slack shows the ack's body to the person
                ws.show_reply(channel, user, None, _json(resp))
            return {"ok": resp.status_code == 200, "status": resp.status_code}
        if act.type == "view_submission":
            modal = ws.modals.get(act.view_id or "")
            if modal is None or modal.user != user:
                raise HTTPException(404, "no such modal open for you")
            payload = payloads.view_submission(user, {**modal.view, "id": modal.id}, act.values, trigger)
            resp = await self._to_bot(payloads.form_body(payload), "application/x-www-form-urlencoded")
            answer = _json(resp) if resp.content else {}
            errors = dict(answer.get("errors") or {}) if answer.get("response_action") == "errors" else {}
            with ws._lock:
                modal.errors = errors
                if not errors:  # Slack closes a modal the app accepted
                    ws.modals.pop(modal.id, None)
                ws.version += 1
            return {"ok": resp.status_code == 200, "status": resp.status_code, "errors": errors}
        if act.view == "home":
            payload = payloads.home_click(user, act.action_id, act.value, ws.home.get(user) or {}, trigger,
                                          act.block_id)
        else:
            msg = self._message(act.channel, act.ts)
            response_url = ws.issue_response_url(api, msg.channel, user, msg.thread_ts or msg.ts)
            shown = {"ts": msg.ts, "thread_ts": msg.thread_ts, "text": msg.text, "blocks": msg.blocks,
                     "user": msg.user}
            payload = payloads.message_click(user, act.action_id, act.value, msg.channel, shown, trigger,
                                             response_url, act.block_id)
        resp = await self._to_bot(payloads.form_body(payload), "application/x-www-form-urlencoded")
        return {"ok": resp.status_code == 200, "status": resp.status_code}

    # -- what the page shows -----------------------------------------------------------------------
    def agent_side(self) -> list[dict[str, Any]]:
        """The latest escalations as their agent sees them: the poll's JSON and the change-log entry."""
        out = []
        with self.db.transaction() as s:
            recent = s.scalars(select(Escalation).order_by(Escalation.created_at.desc(), Escalation.id.desc())
                               .limit(AGENT_PANEL_SIZE))
            for esc in recent:
                row = s.scalars(select(ChangelogEntry).where(ChangelogEntry.escalation_id == esc.id)).first()
                out.append({"id": esc.id, "process_id": esc.process_id,
                            "summary": esc.request["action"]["summary"],
                            "poll": escalation_view.view(s, esc, f"{self.base}/api/v1/escalations/{esc.id}"),
                            "changelog": row_to_entry(row) if row is not None else None})
        return out

    def state(self, viewer: str) -> dict[str, Any]:
        ws = self.ws
        with ws._lock:
            dm = dm_channel(viewer)
            visible = [c.id for c in ws.channels.values()] + [dm]
            messages: dict[str, list[dict[str, Any]]] = {}
            for (channel, _), m in sorted(ws.messages.items(), key=lambda kv: kv[0][1]):
                if channel in visible and m.ephemeral_to in (None, viewer):
                    messages.setdefault(channel, []).append({
                        "ts": m.ts, "thread_ts": m.thread_ts, "user": m.user, "text": m.text, "blocks": m.blocks,
                        "edited": bool(m.history), "ephemeral": m.ephemeral_to is not None})
            modal = next((m for m in reversed(ws.modals.values()) if m.user == viewer), None)
            names = {u.id: u.name for u in ws.users.values()} | {c.id: c.name for c in ws.channels.values()}
            names |= dict(ws.group_handles) | {BOT_USER: "aopbot"}
            state = {
                "struggling": ws.struggling,
                "me": viewer,
                "bot": {"id": BOT_USER, "name": "aopbot"},
                "people": [{"id": p.id, "name": p.name, "roles": p.roles} for p in self.cast.people.values()],
                "names": names,
                "channels": [{"id": c.id, "name": c.name} for c in ws.channels.values()],
                "dms": [{"id": dm, "name": "aopbot"}],
                "messages": messages,
                "home": {"blocks": ws.home[viewer].get("blocks", [])} if viewer in ws.home else None,
                "modal": None if modal is None else {
                    "id": modal.id, "title": (modal.view.get("title") or {}).get("text", ""),
                    "submit": (modal.view.get("submit") or {}).get("text", "Submit"),
                    "close": (modal.view.get("close") or {}).get("text", "Cancel"),
                    "blocks": modal.view.get("blocks", []), "errors": modal.errors},
            }
        state["samples"] = [{"key": s.key, "label": f"{s.label} ({p.name})"}
                            for s, p in samples.available(self.registry.all())]
        state["agent"] = self.agent_side()
        # The version is the content's own hash: the page's poll learns "nothing changed" cheaply,
        # whatever changed it (a Slack call or a decision in the database).
        state["version"] = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return state


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def _host_name(value: str) -> str:
    """The host of a Host header or URL netloc, without the port ([::1]:3000 → ::1)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def page_guard(settings: Settings):
    """The page's endpoints act as anyone in the workspace, so only the page itself may call them:
    a Host this bot is known by (a DNS-rebinding site sends its own name), and JSON bodies on POST
    (a cross-site form or no-CORS fetch cannot send application/json without a preflight we never
    answer)."""
    allowed = set(LOOPBACK_NAMES) | {_host_name(urlsplit(u).netloc) for u in (settings.aop_public_url,
                                                                              settings.local_url) if u}
    if settings.host not in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        allowed.add(_host_name(settings.host))

    def guard(request: Request) -> None:
        if _host_name(request.headers.get("host", "")) not in allowed:
            raise HTTPException(403, "the sandbox answers only to the names this bot is served under")
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() \
                != "application/json":
            raise HTTPException(415, "the sandbox page sends JSON")
    return guard


def router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    guarded = APIRouter(include_in_schema=False, dependencies=[Depends(page_guard(sandbox.settings))])

    @guarded.get("/sandbox")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @guarded.get("/sandbox/archives/{channel}/{p}")
    async def permalink(channel: str, p: str):
        """Links to a thread (DMs and /aop answers carry them) open it in the page."""
        ts = f"{p[1:11]}.{p[11:]}" if p.startswith("p") and len(p) > 11 else ""
        return RedirectResponse(f"/sandbox#channel={channel}&ts={ts}", status_code=302)

    @guarded.get("/sandbox/state")
    def state(request: Request):
        viewer = request.query_params.get("as") or people.STRANGER
        body = sandbox.state(viewer)
        if request.query_params.get("since") == body["version"]:
            return {"version": body["version"], "changed": False}
        return {**body, "changed": True}

    @guarded.post("/sandbox/act")
    async def act(body: Act):
        return await sandbox.act(body)

    @guarded.post("/sandbox/sample")
    async def sample(request: Request):
        body = await request.json()
        return await sandbox.send_sample(str((body or {}).get("sample", "")))

    @guarded.post("/sandbox/struggle")
    async def struggle(request: Request):
        body = await request.json()
        sandbox.ws.struggling = bool((body or {}).get("on"))
        log.warning("sandbox: Slack is %s", "struggling (429s and 500s)" if sandbox.ws.struggling else "well again")
        return {"ok": True, "struggling": sandbox.ws.struggling}

    @r.api_route("/sandbox/api/{path:path}", methods=["GET", "POST"])
    async def web_api(path: str, request: Request):
        args = parse_call(request.url.query, await request.body(), request.headers.get("content-type", ""))
        status, headers, body = route(sandbox.ws, "/" + path, args, request.headers.get("authorization", ""))
        return JSONResponse(body, status_code=status, headers=headers)

    r.include_router(guarded)
    return r
