"""Input limits enforced before any route runs: header count and size, a body cap per route (413 before reading
past it, honouring Content-Length), and JSON nesting depth. Sized to what the providers document sending."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MB = 1024 * 1024
# Meta: webhook notifications are batched and "can be up to 3MB". Slack documents no cap; its largest
# requests are view_submission payloads of 100-block modals, well under 1 MB.
WEBHOOK_CAPS: tuple[tuple[str, int], ...] = (("/webhooks/whatsapp/", 3 * MB), ("/slack/", 1 * MB))

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """Nesting depth of a JSON document (strings skipped), without parsing it (a parser would recurse)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b"", body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class LimitsMiddleware:
    """ASGI middleware: refuses oversized or too-deep input with a 4xx naming the limit, before the app reads it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def cap_for(self, path: str) -> int:
        if path.startswith("/codec/"):
            return self.settings.codec_max_body_bytes
        for prefix, cap in WEBHOOK_CAPS:
            if path.startswith(prefix):
                return cap
        return self.settings.max_body_bytes

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        if len(headers) > s.max_header_count:
            await self._refuse(send, 431, f"more than {s.max_header_count} request headers")
            return
        if sum(len(k) + len(v) for k, v in headers) > s.max_header_bytes:
            await self._refuse(send, 431, f"request headers over {s.max_header_bytes} bytes")
            return
        cap = self.cap_for(scope.get("path") or "")
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                await self._refuse(send, 400, "invalid Content-Length")
                return
            if int(lengths[0]) > cap:
                await self._refuse(send, 413, f"body of {int(lengths[0])} bytes is over this route's "
                                              f"{cap}-byte limit")
                return
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > cap:  # stop reading: the rest is never buffered
                await self._refuse(send, 413, f"body is over this route's {cap}-byte limit")
                return
            if not msg.get("more_body"):
                break
        ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"").lower()
        if body and b"json" in ctype and json_depth(bytes(body)) > s.max_json_depth:
            await self._refuse(send, 400, f"JSON nested deeper than {s.max_json_depth} levels")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
