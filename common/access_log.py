"""One access-log line per request on stdout (docs/contract.md §6, ``ACCESS_LOG=text|json|off``).

A proxied request's line is written by the gateway when the request ends, from
the same record as its request-log row (``Gateway.finish``); every other request
(the admin app, ``/metrics``, ``/health``) gets its line from
:class:`AccessLogMiddleware`, which leaves the proxied paths to the gateway, so
each request has exactly one line. Fields: time (arrival, UTC), request id,
source, who, method, path, status, queue wait and duration in milliseconds, and
the client IP. Never a secret or a prompt: "who" is a key's name or a refused
key's display prefix, a whitelist entry, or a username.

Lines go through :mod:`logging` (logger ``seadragon.access``, not propagated): a
``QueueHandler`` hands each record to one ``QueueListener`` thread that formats it with
:class:`TextFormatter` or :class:`JsonFormatter` and writes it, so no request waits on stdout.

Text (``-`` for an empty field; a value with spaces or control characters is quoted)::

    2026-12-02T02:40:00.123Z 3f2a9c… 10.0.0.5 custom_app key:laptop POST /api/chat 200 wait=12ms 1530ms
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import re
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from common.dispatch import begin_shutdown_of
from common.network import IPNetwork, resolve_client_ip

LOGGER = "seadragon.access"
# Set in the ASGI scope by a handler whose request writes its own line (the web chat's reply):
# the wrapper then writes none, so each request has exactly one.
WRITES_OWN_LINE = "seadragon.writes_own_access_line"

FLUSH_TIMEOUT = 5.0  # seconds a flush (shut-down, exit) waits for the listener to write what is queued
_PLAIN = re.compile(r"[!#-~]+")  # printable ASCII without space or double quote


def _text_field(value: object) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    # A path or a key name chosen by a client must not forge a second line.
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """One access record as the README's text line."""

    def format(self, record: logging.LogRecord) -> str:
        """The line, without its newline."""
        fields = record.access  # type: ignore[attr-defined]
        wait = "-" if fields["wait_ms"] is None else f"{fields['wait_ms']:.0f}ms"
        duration = "-" if fields["duration_ms"] is None else f"{fields['duration_ms']:.0f}ms"
        names = ("request_id", "client_ip", "source", "who", "method", "path")
        return " ".join(
            (
                _stamp(fields["time"]),
                *(_text_field(fields[name]) for name in names),
                str(fields["status"]),
                f"wait={wait}",
                duration,
            )
        )


class JsonFormatter(logging.Formatter):
    """One access record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """The object, without its newline."""
        fields = record.access  # type: ignore[attr-defined]
        return json.dumps(
            {
                **fields,
                "time": _stamp(fields["time"]),
                "wait_ms": _ms(fields["wait_ms"]),
                "duration_ms": _ms(fields["duration_ms"]),
            },
            separators=(",", ":"),
        )


FORMATTERS: dict[str, logging.Formatter] = {"text": TextFormatter(), "json": JsonFormatter()}


class _Writer(logging.Handler):
    """Runs on the listener's thread: each record in its log's format, to its log's stream."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = FORMATTERS[record.access_format].format(record)  # type: ignore[attr-defined]
            # stdout is looked up per line: tests and servers may swap it.
            stream: TextIO = record.access_stream or sys.stdout  # type: ignore[attr-defined]
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)  # logging's own report on stderr; the next line still goes out


class _Pipe:
    """The process's one queue and listener thread behind the ``seadragon.access`` logger."""

    def __init__(self) -> None:
        self.queue: queue.Queue[logging.LogRecord] = queue.Queue()
        self.listener: logging.handlers.QueueListener | None = None

    def start(self) -> None:
        if self.listener is not None:
            return
        logger = logging.getLogger(LOGGER)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the line is the whole record: no root handler repeats it
        logger.addHandler(logging.handlers.QueueHandler(self.queue))
        self.listener = logging.handlers.QueueListener(self.queue, _Writer())
        self.listener.start()
        atexit.register(self.flush)  # lines still queued when the process ends are written

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Block until every queued line is written, or ``timeout`` seconds (a stuck stdout)."""
        if self.listener is None:
            return
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    # Exit must not hang on a stdout nobody reads; say so on stderr.
                    print(
                        f"seadragon: {self.queue.unfinished_tasks} access-log lines not written",
                        file=sys.stderr,
                    )
                    return
                self.queue.all_tasks_done.wait(left)


_PIPE = _Pipe()


class AccessLog:
    """Writes the lines in one format to stdout (or ``stream``); ``off`` writes nothing."""

    def __init__(self, mode: str, stream: TextIO | None = None) -> None:
        if mode not in ("text", "json", "off"):
            raise ValueError(f"access log format must be text, json or off, not {mode!r}")
        self.mode = mode
        self.enabled = mode != "off"
        self._stream = stream
        self._logger = logging.getLogger(LOGGER)
        if self.enabled:
            _PIPE.start()

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
        """Queue one request's line (callers check :attr:`enabled` first to skip building ``who``)."""
        if not self.enabled:
            return
        fields = {
            "time": time,
            "request_id": request_id,
            "client_ip": client_ip,
            "source": source,
            "who": who,
            "method": method,
            "path": path,
            "status": status,
            "wait_ms": wait_ms,
            "duration_ms": duration_ms,
        }
        extra = {"access": fields, "access_format": self.mode, "access_stream": self._stream}
        self._logger.info("%s %s %s", method, path, status, extra=extra)

    def flush(self) -> None:
        """Block until every line queued so far is written (shut-down and tests)."""
        _PIPE.flush()


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
            if not scope.get(WRITES_OWN_LINE):
                self._write(scope, arrived, started, answer)

    def _write(self, scope: Scope, arrived: datetime, started: float, answer: dict[str, Any]) -> None:
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
