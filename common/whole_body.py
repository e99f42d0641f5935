"""Bodies read whole by the async server before the app sees them (docs/contract.md §16).

The admin app is Flask behind a2wsgi, on a pool of 8 worker threads. a2wsgi hands
Flask a body that reads from the socket as Flask asks, so a worker waited on the
client: eight sockets dripping a body into ``/auth/login`` froze sign-in, the admin
API, the panel and the chat pages, and nothing ever cut them off. Here every
request outside the proxied paths (which read their own bodies, within the same
limits, in ``proxy_app.bodies``) is read on the event loop first, within
``BODY_TIMEOUT`` (else 408) and ``MAX_BODY`` (else 413), both answered with
``Connection: close``; the app then receives the whole body in one message, so no
worker thread ever waits on a socket. After it, the app's ``receive`` is the
server's again: a disconnect still reaches it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from common.dispatch import begin_shutdown_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WholeBody:
    """ASGI middleware: the body of each HTTP request (but ``streamed(path)`` ones) is read whole first."""

    def __init__(
        self, app: ASGIApp, *, max_body: int, timeout: float, streamed: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout
        self.streamed = streamed

    async def begin_shutdown(self) -> None:
        """Shutdown starts: pass it on."""
        await begin_shutdown_of(self.app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streamed(scope["path"]):
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body:
            await _refuse(send, 413, f"request body too large (limit {self.max_body} bytes)")
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read(receive)
        except TimeoutError:
            await _refuse(send, 408, f"request body not received within {self.timeout:g} s")
            return
        if body is None:
            return  # the client left: nobody to answer
        if len(body) > self.max_body:
            await _refuse(send, 413, f"request body too large (limit {self.max_body} bytes)")
            return
        whole: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    return b"".join(parts) + chunk  # over the limit: refused by the caller
                parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server refuses a malformed length before the app sees it
    return 0


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
