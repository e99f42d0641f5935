"""One access-log line per request on stdout (docs/contract.md §6, ``ACCESS_LOG=text|json|off``).

A proxied request's line is written by the gateway when the request ends, from
the same record as its request-log row (``Gateway.finish``); every other request
(the admin app, ``/metrics``, ``/health``) gets its line from
:class:`AccessLogMiddleware`, which leaves the proxied paths to the gateway, so
each request has exactly one line. Fields: time (arrival, UTC), request id,
source, who, method, path, status, queue wait and duration in milliseconds, and
the client IP. Never a secret or a prompt: "who" is a key's name or a refused
key's display prefix, a whitelist entry, or a username.

Text (``-`` for an empty field; a value with spaces or control characters is quoted)::

    2026-12-02T02:40:00.123Z 3f2a9c… 10.0.0.5 custom_app key:laptop POST /api/chat 200 wait=12ms 1530ms
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from common.dispatch import begin_shutdown_of
from common.network import IPNetwork, resolve_client_ip

_PLAIN = re.compile(r"[!#-~]+")  # printable ASCII without space or double quote


def _text_field(value: object) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    # A path or a key name chosen by a client must not forge a second line.
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


class AccessLog:
    """Writes the lines in one format to stdout (or ``stream``); ``off`` writes nothing."""

    def __init__(self, mode: str, stream: TextIO | None = None) -> None:
        if mode not in ("text", "json", "off"):
            raise ValueError(f"access log format must be text, json or off, not {mode!r}")
        self.mode = mode
        self.enabled = mode != "off"
        self._stream = stream

    def write(
        self,
        *,
        time: datetime,
        request_id: str | None,
        client_ip: str | None,
        source: str | None,
        who: str | None,
        method: str,
        path: str,
        status: int,
        wait_ms: float | None,
        duration_ms: float | None,
    ) -> None:
        """Write one request's line (callers check :attr:`enabled` first to skip building ``who``)."""
        if not self.enabled:
            return
        if time.tzinfo is not UTC:
            time = time.astimezone(UTC)
        stamp = f"{time:%Y-%m-%dT%H:%M:%S}.{time.microsecond // 1000:03d}Z"
        if self.mode == "json":
            line = json.dumps(
                {
                    "time": stamp,
                    "request_id": request_id,
                    "client_ip": client_ip,
                    "source": source,
                    "who": who,
                    "method": method,
                    "path": path,
                    "status": status,
                    "wait_ms": _ms(wait_ms),
                    "duration_ms": _ms(duration_ms),
                },
                separators=(",", ":"),
            )
        else:
            wait = "-" if wait_ms is None else f"{wait_ms:.0f}ms"
            duration = "-" if duration_ms is None else f"{duration_ms:.0f}ms"
            line = " ".join(
                (
                    stamp,
                    _text_field(request_id),
                    _text_field(client_ip),
                    _text_field(source),
                    _text_field(who),
                    _text_field(method),
                    _text_field(path),
                    str(status),
                    f"wait={wait}",
                    duration,
                )
            )
        stream = self._stream or sys.stdout  # looked up each time: tests and servers may swap stdout
        stream.write(line + "\n")
        stream.flush()


Scope = MutableMapping[str, Any]


class AccessLogMiddleware:
    """ASGI wrapper writing the line of each request that ``skip(path)`` leaves to the app itself."""

    def __init__(
        self,
        app: Callable,
        log: AccessLog,
        skip: Callable[[str], bool],
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self.app = app
        self.log = log
        self.skip = skip
        self.trusted_proxies = trusted_proxies

    async def begin_shutdown(self) -> None:
        """Shutdown starts: pass it on (the gateway fails its waiting requests)."""
        await begin_shutdown_of(self.app)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.log.enabled or self.skip(scope["path"]):
            await self.app(scope, receive, send)
            return
        arrived, started = datetime.now(UTC), time.monotonic()
        answer: dict[str, Any] = {"status": 500, "request_id": None}

        async def noting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        answer["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            self.log.write(
                time=arrived,
                request_id=answer["request_id"],
                client_ip=self._client_ip(scope),
                source=None,
                who=None,
                method=scope["method"],
                path=scope["path"],
                status=answer["status"],
                wait_ms=None,
                duration_ms=(time.monotonic() - started) * 1000,
            )

    def _client_ip(self, scope: Scope) -> str | None:
        peer = (scope.get("client") or (None, None))[0]
        forwarded = ", ".join(
            value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
        )
        address = resolve_client_ip(peer, forwarded or None, self.trusted_proxies)
        return None if address is None else str(address)
