"""A lean httpx transport for plain HTTP/1.1 to Ollama: one asyncio Protocol per connection.

httpcore's pool takes a global lock per request and parses with pure-Python h11;
here a connection is a Protocol feeding ``httptools`` (C), the pool is a dict of
idle connections per (host, port) touched only from the event loop, and body
chunks go to the reader as they arrive. Errors are httpx's own (ConnectError,
ConnectTimeout, ReadError, RemoteProtocolError, WriteTimeout), raised where
httpcore would raise them, so callers map them the same way. https URLs go to
httpx's default transport.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import httptools
import httpx

T = TypeVar("T")
READ_HIGH_WATER = 256 * 1024  # buffered body bytes before the socket stops being read
CHUNKED_TE = b"chunked"


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses its response, then idles in the pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self._framed = False  # Content-Length or chunked: the end of the body is known without EOF
        self.headers_done = False
        self.complete = False
        self.closed = False
        self.busy = False  # a request is on the wire (data outside of one makes the connection unusable)
        self.got_bytes = False
        self.head_only = False
        self.reusable = False  # the server allows another request on this connection
        self._stray = False  # a second message began after the response: not ours to parse
        self.error: httpx.TransportError | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if not self.busy or self.complete:
            # Nothing was asked: a stray byte means the connection's state is unknown.
            self._fail(httpx.RemoteProtocolError("unexpected data from Ollama between responses"))
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response from Ollama: {exc}"))
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("Ollama switched protocols"))
        if self._stray:
            # The response is whole; what followed it in the same read makes the connection unusable.
            self._fail(httpx.RemoteProtocolError("Ollama sent data after its response"))
        if self._buffered > READ_HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:  # noqa: D102
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._lost(exc)
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(httpx.WriteError("Ollama closed the connection while we were sending"))

    def pause_writing(self) -> None:  # noqa: D102
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:  # noqa: D102
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:  # noqa: D102
        if self.headers_done:
            self._stray = True  # a final response was parsed already

    def on_status(self, status: bytes) -> None:  # noqa: D102
        if not self._stray:
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        if not self._stray:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:  # noqa: D102
        if self._stray:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self.reason, self.headers = b"", []  # an interim response: the real one follows
            return
        self.status = status
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and value.lower().rstrip().endswith(CHUNKED_TE)
            ):
                self._framed = True
        self._framed = self._framed or status in (204, 304)
        # Asked now: llhttp forgets the answer once the message is complete.
        self.reusable = self._parser.should_keep_alive()
        self.headers_done = True
        if self.head_only:
            # No body follows a HEAD answer, whatever its Content-Length says; the parser
            # cannot be told, so the connection is not reused.
            self.complete = True
            self.closed = True
        self._wake()

    def on_body(self, body: bytes) -> None:  # noqa: D102
        if self._stray:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:  # noqa: D102
        if self.headers_done and not self._stray:
            self.complete = True
            self._wake()

    # internals

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _lost(self, exc: Exception | None) -> None:
        if self.closed and self._transport is None:
            return
        self.closed = True
        if self.busy and not self.complete and self.error is None:
            if exc is not None:
                self.error = httpx.ReadError(f"connection to Ollama broken: {exc}")
            elif self.headers_done and not self._framed:
                self.complete = True  # a close-delimited body ends with the connection (a clean FIN)
            elif not self.got_bytes:
                self.error = httpx.RemoteProtocolError("Server disconnected without sending a response.")
            else:
                self.error = httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        self._wake()

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    # used by the transport and the response stream

    @property
    def usable(self) -> bool:
        """Idle, open and in a known state: fit for the next request."""
        return not self.closed and self.error is None and self._transport is not None

    def readable_now(self) -> bool:
        """True when the socket has bytes or a FIN waiting that the event loop has not delivered yet.

        An idle connection has nothing to read: if it has, the server closed it (an idle
        timeout) or sent something unasked, and it must not carry the next request.
        """
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def start(self, head_only: bool) -> None:
        """Reset the per-response state before a request is written."""
        self._parser = httptools.HttpResponseParser(self)
        self._chunks, self._buffered = [], 0
        self.status, self.reason, self.headers = 0, b"", []
        self._framed = self.headers_done = self.complete = self.got_bytes = self.reusable = False
        self._stray = False
        self.head_only = head_only
        self.busy = True

    def write(self, data: bytes) -> None:
        """Queue bytes on the socket."""
        assert self._transport is not None
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the socket's write buffer is below its high-water mark."""
        if self._drain is not None:
            await self._drain
        if self.closed:
            raise httpx.WriteError("Ollama closed the connection while we were sending")

    async def response_head(self) -> None:
        """Wait for the status line and headers."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_body(self) -> bytes | None:
        """The body bytes received since the last call, or None at the end of the body."""
        while True:
            if self._chunks:
                chunks = self._chunks
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks, self._buffered = [], 0
                if self._paused and self._transport is not None and not self.closed:
                    self._paused = False
                    self._transport.resume_reading()
                return data
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()

    def close(self) -> None:
        """Close the socket now (a half-read response cannot be reused)."""
        self.closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


class ResponseStream(httpx.AsyncByteStream):
    """The body of one response; gives the connection back to the pool when read to its end."""

    def __init__(
        self, transport: LeanTransport, key: tuple[str, int], conn: Connection, read_timeout: float | None
    ) -> None:
        self._owner = transport
        self._key = key
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout  # per wait for body bytes; None for the relay (it times itself)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            if self._read_timeout is None:
                data = await conn.next_body()
            else:
                data = await _timed_read(conn.next_body(), self._read_timeout)
        except BaseException:
            self._release(reuse=False)
            raise
        if data is None:
            self._release(reuse=True)
            raise StopAsyncIteration
        return data

    def _release(self, *, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.busy = False
        if reuse and conn.complete and conn.usable and self._owner.keep_alive(conn):
            self._owner.put_back(self._key, conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        """Give the connection back if the body was read to its end, else close it."""
        # _release reuses only a connection whose response is complete; unread bytes rule it out too.
        self._release(reuse=self._conn is not None and not self._conn._chunks)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio Protocols with a per-(host, port) keep-alive pool."""

    def __init__(self, *, max_keepalive: int = 32, fallback: httpx.AsyncBaseTransport | None = None) -> None:
        self.max_keepalive = max_keepalive
        self._idle: dict[tuple[str, int], deque[Connection]] = {}
        self._fallback = fallback
        self._closed = False

    def keep_alive(self, conn: Connection) -> bool:
        """True when the server allows the connection to be reused."""
        return conn.reusable and not self._closed

    def put_back(self, key: tuple[str, int], conn: Connection) -> None:
        """Return an idle connection to the pool (the oldest goes when it is full)."""
        idle = self._idle.setdefault(key, deque())
        idle.append(conn)
        while len(idle) > self.max_keepalive:
            idle.popleft().close()

    def _pooled(self, key: tuple[str, int]) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out by the server
            if conn.usable and not conn.readable_now():
                return conn
            conn.close()
        return None

    async def _connect(self, host: str, port: int, timeout: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(loop)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, host, port)
        except TimeoutError:
            limit = f" within {timeout:g} s" if timeout is not None else ""
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out{limit}") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request and return as soon as the response's headers are in."""
        url = request.url
        if self._closed:
            raise httpx.ConnectError("the upstream transport is closed")
        if url.scheme != "http":
            if self._fallback is None:
                self._fallback = httpx.AsyncHTTPTransport(trust_env=False)
            return await self._fallback.handle_async_request(request)
        host = url.host
        port = url.port or 80
        key = (host, port)
        timeouts = request.extensions.get("timeout") or {}
        head = _request_head(request)
        body = request.content if hasattr(request, "_content") else None
        conn = self._pooled(key) or await self._connect(host, port, timeouts.get("connect"))
        conn.start(head_only=request.method == "HEAD")
        try:
            try:
                if body is not None:
                    conn.write(head + body if len(body) < 64 * 1024 else head)
                    if len(body) >= 64 * 1024:
                        conn.write(body)
                    await _drained(conn, timeouts.get("write"))
                else:
                    conn.write(head)
                    await _send_stream(conn, request, timeouts.get("write"))
            except httpx.WriteError:
                # A server may answer early (a body too large, malformed) and close while we
                # still send: its answer, when it came, is what the caller needs to see.
                if not conn.headers_done:
                    raise
            read_timeout = timeouts.get("read")
            if read_timeout is None:
                await conn.response_head()
            else:
                await _timed_read(conn.response_head(), read_timeout)
        except BaseException:
            conn.busy = False
            conn.close()
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=ResponseStream(self, key, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
        )

    async def aclose(self) -> None:
        """Close every idle connection (and the https transport, if one was made)."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()


def _request_head(request: httpx.Request) -> bytes:
    url = request.url
    target = url.raw_path or b"/"
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # A CR or LF inside a name or value would split the request (header injection).
    if head.count(b"\n") != len(request.headers.raw) + 2 or head.count(b"\r") != head.count(b"\n"):
        raise httpx.LocalProtocolError("a request header contains CR or LF")
    return head


async def _timed_read(waiting: Awaitable[T], timeout: float) -> T:
    try:
        async with asyncio.timeout(timeout):
            return await waiting
    except TimeoutError:
        raise httpx.ReadTimeout(f"Ollama sent nothing for {timeout:g} s") from None


async def _drained(conn: Connection, timeout: float | None) -> None:
    try:
        async with asyncio.timeout(timeout):
            await conn.drain()
    except TimeoutError:
        raise httpx.WriteTimeout(f"sending the request took over {timeout:g} s") from None


async def _send_stream(conn: Connection, request: httpx.Request, timeout: float | None) -> None:
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    stream = request.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for part in stream:
        if not part:
            continue
        conn.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
        await _drained(conn, timeout)
    if chunked:
        conn.write(b"0\r\n\r\n")
