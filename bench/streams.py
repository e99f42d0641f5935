"""A lean asyncio HTTP/1.1 client for streaming scenarios.

Client, gateway and simulator share two cores, so every microsecond the
client spends is taken from what it measures: this speaks HTTP/1.1 on raw
asyncio streams (no httpx object per chunk), de-chunks the body, counts NDJSON
lines and keeps only the last one to check that the stream ended with
``done: true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0


@dataclass
class StreamResult:
    """What one request saw: status, timings (seconds from its start), lines, how it ended."""

    status: int = 0
    ttfb: float | None = None  # first body byte
    total: float | None = None  # complete body
    lines: int = 0
    done: bool = False
    error: str | None = None
    finished_at: float | None = None  # perf_counter() when the body completed
    last_line: bytes = b""  # the final NDJSON line (the whole body of a non-streaming reply)

    @property
    def ok(self) -> bool:
        """True for a 200 whose body ended with a ``done: true`` line."""
        return self.status == 200 and self.done and self.error is None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is there (less client CPU), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def build_request(host: str, port: int, path: str, body: dict, headers: dict[str, str]) -> bytes:
    """The exact bytes of one POST with a JSON body."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


class _Body:
    """Counts lines and keeps the last one of a body fed piece by piece."""

    def __init__(self) -> None:
        self.newlines = 0
        self.tail = b""  # the last line (complete or not): one line, so copying it stays cheap

    def feed(self, data: bytes) -> None:
        self.newlines += data.count(b"\n")
        buf = self.tail + data
        # The last non-empty line: an SSE stream ends with a blank line after its last event.
        cut = buf.rstrip(b"\r\n").rfind(b"\n")
        self.tail = buf[cut + 1 :] if cut >= 0 else buf

    @property
    def lines(self) -> int:
        """Non-empty lines seen (a body without a final newline still counts its last line)."""
        return self.newlines + (1 if self.tail.strip() and not self.tail.endswith(b"\n") else 0)

    def last_line(self) -> bytes:
        return self.tail.strip()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], body: _Body, mark) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # trailer section ends with an empty line
                return
            data = await reader.readexactly(size + 2)
            mark()
            body.feed(data[:-2])
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            mark()
            remaining -= len(data)
            body.feed(data)
    else:
        while data := await reader.read(65536):
            mark()
            body.feed(data)


async def fetch(
    host: str, port: int, request: bytes, timeout: float, connect_gate: asyncio.Semaphore | None = None
) -> StreamResult:
    """Send one request and read its whole response within ``timeout`` seconds."""
    result = StreamResult()
    start = time.perf_counter()
    writer = None

    def mark() -> None:
        if result.ttfb is None:
            result.ttfb = time.perf_counter() - start

    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(host, port, connect_gate)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            result.status, headers = _parse_head(head[:-4])
            body = _Body()
            await _read_body(reader, headers, body, mark)
        now = time.perf_counter()
        result.total, result.finished_at, result.lines = now - start, now, body.lines
        result.last_line = body.last_line()
        result.done, result.error = _ending(result.last_line)
    except TimeoutError:
        result.error = f"timed out after {timeout:g} s"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            await _close(writer)
    return result


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CONNECT_TIMEOUT)


async def _connect(host: str, port: int, gate: asyncio.Semaphore | None):
    if gate is None:
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    async with gate:
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)


def _ending(line: bytes) -> tuple[bool, str | None]:
    """Whether the last line says ``done: true``, and any in-band error it carries."""
    try:
        last = json.loads(line)
    except ValueError:
        return False, f"last line is not JSON: {line[:80]!r}"
    if not isinstance(last, dict):
        return False, "last line is not a JSON object"
    if "error" in last:
        return False, f"in-band error: {str(last['error'])[:200]}"
    return last.get("done") is True, None


async def fetch_many(
    host: str,
    port: int,
    requests: Sequence[bytes],
    timeout: float,
    connect_burst: int = 200,
) -> list[StreamResult]:
    """Run all ``requests`` concurrently; at most ``connect_burst`` handshakes at the same instant.

    The burst limit only spaces out the TCP handshakes so a listen backlog never
    overflows (a dropped SYN costs a 1 s retransmit and would poison the figures);
    every request still runs concurrently with all the others.
    """
    gate = asyncio.Semaphore(connect_burst)
    return await asyncio.gather(*(fetch(host, port, r, timeout, gate) for r in requests))


class HeldStream:
    """A streaming request kept open after its first body chunk, to hold a slot until :meth:`close`."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.status = 0

    async def open(self, host: str, port: int, request: bytes, timeout: float) -> HeldStream:
        """Send ``request`` and return once the first chunk of its body has arrived."""
        try:
            async with asyncio.timeout(timeout):
                reader, self.writer = await asyncio.open_connection(host, port)
                self.writer.write(request)
                self.status, headers = _parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
                if self.status != 200:
                    raise RuntimeError(f"the slot-holding stream got status {self.status}")
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                    await reader.readexactly(size + 2)
                else:
                    await reader.read(1)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Leave: the gateway must notice and free the slot."""
        if self.writer is not None:
            await _close(self.writer)
