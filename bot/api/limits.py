"""Request size limit: 413 for a body over AOP_MAX_BODY_BYTES, whether or not Content-Length is honest
(a chunked body is counted as it arrives)."""

from __future__ import annotations

from bot.api.responses import error_response


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is honest."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._refuse(send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        resp = error_response(413, "body_too_large", f"request body is over {self.max_bytes} bytes",
                              [{"field": "body", "message": f"at most {self.max_bytes} bytes"}])
        await resp({"type": "http"}, None, send)
