"""Web API requests as slack_sdk sends them (form or JSON, JSON-encoded blocks), parsed for the workspace.

Both servers of the workspace (the bot's own routes and the tests' standalone server) parse a call
with this one function, so the rules see the same arguments whichever way the call came in.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.sandbox.workspace import Answer, SlackWorkspace


def parse_call(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    args: dict[str, Any] = {k: v[0] for k, v in parse_qs(query).items()}
    if raw:
        if "json" in content_type:
            body = json.loads(raw)
            if isinstance(body, dict):
                args.update(body)
        else:
            args.update({k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()})
    for key in ("blocks", "view", "attachments", "metadata"):
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass
    return args


def route(ws: SlackWorkspace, path: str, args: dict[str, Any], auth: str) -> Answer:
    """`…/api/<method>` is a Web API call; `…/response/<key>` a POST to a response_url."""
    head, _, last = path.rstrip("/").rpartition("/")
    if head.endswith("/response"):
        return ws.respond(last, args)
    return ws.answer(last, args, auth)


class StandaloneServer:
    """The workspace on its own port (127.0.0.1), for tests that run the bot against it."""

    def __init__(self, ws: SlackWorkspace) -> None:
        self.ws = ws
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> StandaloneServer:
        ws = self.ws

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                self._handle()

            def do_POST(self):  # noqa: N802
                self._handle()

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                args = parse_call(parts.query, raw, self.headers.get("Content-Type", ""))
                status, headers, body = route(ws, parts.path, args, self.headers.get("Authorization", ""))
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
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + "/api/"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
