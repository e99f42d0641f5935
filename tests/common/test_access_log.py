"""The access-log line (docs/contract.md §6): its two formats, and the ASGI wrapper for non-proxied paths."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from common.access_log import WRITES_OWN_LINE, AccessLog, AccessLogMiddleware

FIELDS = {
    "time": datetime(2026, 12, 2, 2, 40, 0, 123000, tzinfo=UTC),
    "request_id": "abc123",
    "client_ip": "10.0.0.5",
    "source": "custom_app",
    "who": "key:laptop",
    "method": "POST",
    "path": "/api/chat",
    "status": 200,
    "wait_ms": 12.4,
    "duration_ms": 1530.2,
}


def line(mode: str, **changes) -> str:
    stream = io.StringIO()
    log = AccessLog(mode, stream)
    log.write(**{**FIELDS, **changes})
    log.flush()  # written on the listener's thread
    return stream.getvalue()


def test_text_has_every_field_on_one_line():
    assert line("text") == (
        "2026-12-02T02:40:00.123Z abc123 10.0.0.5 custom_app key:laptop POST /api/chat 200 wait=12ms 1530ms\n"
    )


def test_text_marks_empty_fields_and_quotes_what_could_forge_a_line():
    text = line("text", who="key:my app", path="/api/x\n200 forged", wait_ms=None, source=None)
    assert text.count("\n") == 1
    assert ' - "key:my app" POST "/api/x\\n200 forged" 200 wait=- 1530ms' in text


def test_json_is_one_object_per_line():
    text = line("json")
    assert text.endswith("}\n") and text.count("\n") == 1
    expected = {**FIELDS, "time": "2026-12-02T02:40:00.123Z", "wait_ms": 12, "duration_ms": 1530}
    assert json.loads(text) == expected


def test_off_writes_nothing_and_a_bad_format_is_refused():
    assert line("off") == ""
    with pytest.raises(ValueError, match="text, json or off"):
        AccessLog("xml")


async def answer_418(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": [(b"x-request-id", b"rid-1")]})
    await send({"type": "http.response.body", "body": b""})


def scope(path: str, peer: str = "127.0.0.1", forwarded: bytes | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded)] if forwarded else []
    return {"type": "http", "method": "GET", "path": path, "client": (peer, 5000), "headers": headers}


async def call(app, request_scope: dict) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        await asyncio.sleep(0)

    await app(request_scope, receive, send)


async def test_the_wrapper_writes_the_other_paths_lines_and_leaves_proxied_ones_to_the_gateway():
    stream = io.StringIO()
    trusted = (ipaddress.ip_network("127.0.0.1/32"),)
    app = AccessLogMiddleware(
        answer_418, AccessLog("json", stream), lambda path: path == "/api/chat", trusted
    )
    await call(app, scope("/admin/", forwarded=b"203.0.113.9"))
    await call(app, scope("/api/chat"))
    app.log.flush()
    [written] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (written["path"], written["status"], written["request_id"]) == ("/admin/", 418, "rid-1")
    assert written["client_ip"] == "203.0.113.9"  # behind a trusted proxy, as the gateway resolves it
    assert written["duration_ms"] is not None and written["wait_ms"] is None


async def test_the_wrapper_does_nothing_when_the_log_is_off():
    stream = io.StringIO()
    log = AccessLog("off", stream)
    await call(AccessLogMiddleware(answer_418, log, lambda path: False), scope("/admin/"))
    log.flush()
    assert stream.getvalue() == ""


async def test_the_wrapper_writes_nothing_for_a_request_that_writes_its_own_line():
    async def writes_its_own(request_scope, receive, send) -> None:
        request_scope[WRITES_OWN_LINE] = True  # as the web chat's reply does
        await answer_418(request_scope, receive, send)

    stream = io.StringIO()
    log = AccessLog("text", stream)
    app = AccessLogMiddleware(writes_its_own, log, lambda path: False)
    await call(app, scope("/chat/api/reply"))
    await call(AccessLogMiddleware(answer_418, log, lambda path: False), scope("/admin/"))
    log.flush()
    assert [text.split(" ")[6] for text in stream.getvalue().splitlines()] == ["/admin/"]


def test_lines_go_through_the_seadragon_access_logger_and_are_written_off_the_calling_thread():
    class Recording(io.StringIO):
        threads: list[str] = []

        def write(self, text: str) -> int:
            self.threads.append(threading.current_thread().name)
            return super().write(text)

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("seadragon.access")
    stream = Recording()
    log = AccessLog("json", stream)
    logger.addHandler(handler)
    try:
        log.write(**FIELDS)
        log.flush()
    finally:
        logger.removeHandler(handler)
    assert [record.access["request_id"] for record in seen] == ["abc123"]
    assert json.loads(stream.getvalue())["request_id"] == "abc123"
    assert stream.threads and threading.current_thread().name not in stream.threads


def test_a_flush_is_bounded_when_stdout_is_stuck(capsys):
    release = threading.Event()

    class Stuck(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)  # a pipe nobody reads
            return super().write(text)

    stream = Stuck()
    log = AccessLog("text", stream)
    log.write(**FIELDS)
    started = time.monotonic()
    try:
        from common.access_log import _PIPE

        _PIPE.flush(timeout=0.3)
        assert time.monotonic() - started < 3
        assert "access-log lines not written" in capsys.readouterr().err
    finally:
        release.set()
        log.flush()
    assert "abc123" in stream.getvalue()
