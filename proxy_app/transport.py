"""A lean httpx transport for plain HTTP/1.1 to Ollama: kept over httpcore, by measurement.

Why keep hand-written HTTP/1.1: CPU per request is the gateway's cost, and httpcore (h11 in pure
Python, a global pool lock per request) spends 3-7x more of it. Client CPU per streamed request
(8 NDJSON chunks, keep-alive, a raw server in another process; ``python -m bench.transport_cpu``,
best of 2 x 2000 requests, asyncio loop, a shared 2-core machine). aiohttp, the other way out, was
not measured: it is not installed, and it parses with the same llhttp, adding a second client stack:

| transport                                | c=1 µs/req | c=32 µs/req |
|------------------------------------------|-----------:|------------:|
| LeanTransport (httptools)                |        286 |         355 |
| httpx.AsyncHTTPTransport (httpcore, h11) |        971 |        2501 |

The risk of owning the framing is carried by ``tests/proxy/test_transport_differential.py``: one
corpus of well-formed and malformed responses (conflicting and duplicate Content-Length, CL with
chunked, bad chunk sizes, chunk extensions, trailers, obs-fold, 1xx, HEAD/204/304, close-delimited
bodies, closes mid-head and mid-body) goes to this transport and to httpcore and must end the same
way. Where they differ, LeanTransport is the stricter one (it refuses CL with chunked, repeated
Content-Length, obs-fold and bare LF, which RFC 9112 lets a client refuse), and the test pins each
difference. Only httpx's public API is used.

Here a connection is a Protocol (``proxy_app.http1_connection``) feeding httptools, the pool is a dict
of idle connections per (host, port) touched only from the event loop, and body chunks go to the
reader as they arrive. Errors are httpx's own (ConnectError, ConnectTimeout, ReadError,
RemoteProtocolError, WriteTimeout), raised where httpcore would raise them, so callers map them the
same way. https URLs go to httpx's default transport.

A kept-alive connection can die while it idles (a server's idle timeout; Ollama behind a proxy):
its close may cross our next request on the wire. A request that fails on a connection taken from
the pool is sent again, ONCE, on a new connection, when no byte of a response came on it and
either
  (a) the socket refused the request's first write (EPIPE or ECONNRESET on send: the server had
      reset the connection), so not one byte of the request left this machine; any method, POST
      included (a streamed body is not pulled before that first write is known to be taken); or
  (b) the server closed or reset the connection after the request was written, and the request
      is GET, HEAD, OPTIONS or TRACE with an in-memory body.
This is Go's net/http ``shouldRetryRequest``: (a) is its ``nothingWrittenError``, (b) its
``isReplayable`` with ``errServerClosedIdle``/``transportReadFromServerError``. A POST (a
generation) whose bytes were written is never sent again, since Ollama may have started it: 502.
Timeouts are never retried, and a new connection's failure always goes to the caller, so only a
new connection's failure can count against a backend's health (``Upstream.on_connect_error``,
the health checks). A connection whose close was seen before it is picked (``eof_received`` and
``connection_lost`` set ``closed``; a FIN already in the socket, as httpcore's ``is_readable``
check finds) is not picked at all, and neither is one idle for longer than ``keepalive_expiry``
(``UPSTREAM_KEEPALIVE_EXPIRY``, 4 s: below the 5 s idle timeout of uvicorn-served backends such as
the bundled simulator, so the gateway closes first and the race above does not start).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import httpx

from proxy_app.http1_connection import Connection

T = TypeVar("T")
log = logging.getLogger(__name__)

# RFC 9110 §9.2.2 methods Go's net/http resends after a stale connection (Request.isReplayable);
# PUT and DELETE are idempotent too, but Ollama's DELETE /api/delete answers 404 the second time.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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
        self._release(reuse=self._conn is not None and not self._conn.has_unread_body)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio Protocols with a per-(host, port) keep-alive pool."""

    def __init__(
        self,
        *,
        max_keepalive: int = 32,
        keepalive_expiry: float | None = None,
        fallback: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_keepalive = max_keepalive
        # A connection idle longer than this is closed, not reused (None: kept while the server keeps it).
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], deque[Connection]] = {}
        self._fallback = fallback
        self._closed = False

    def keep_alive(self, conn: Connection) -> bool:
        """True when the server allows the connection to be reused."""
        return conn.reusable and not self._closed

    def put_back(self, key: tuple[str, int], conn: Connection) -> None:
        """Return an idle connection to the pool (the oldest goes when it is full)."""
        idle = self._idle.setdefault(key, deque())
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)
        while len(idle) > self.max_keepalive:
            idle.popleft().close()

    def _pooled(self, key: tuple[str, int]) -> Connection | None:
        idle = self._idle.get(key)
        if idle and self.keepalive_expiry is not None:
            oldest_kept = asyncio.get_running_loop().time() - self.keepalive_expiry
            while idle and idle[0].idle_since < oldest_kept:  # oldest first: expired ones are on the left
                idle.popleft().close()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out by the server
            if conn.usable and not conn.readable_now():
                conn.reused = True
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
        try:
            body: bytes | None = request.content  # in memory already (bytes, JSON, form)
        except httpx.RequestNotRead:
            body = None  # a streamed body: sent as it is produced
        conn = self._pooled(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, request, head, body, timeouts)
            except httpx.TransportError:
                if not _may_resend(conn, request.method, body):
                    raise
                log.info("stale keep-alive connection to %s:%s: the request goes on a new one", host, port)
        conn = await self._connect(host, port, timeouts.get("connect"))
        return await self._exchange(key, conn, request, head, body, timeouts)

    async def _exchange(
        self,
        key: tuple[str, int],
        conn: Connection,
        request: httpx.Request,
        head: bytes,
        body: bytes | None,
        timeouts: dict,
    ) -> httpx.Response:
        """Write the request on ``conn`` and wait for the response's head."""
        conn.start(head_only=request.method == "HEAD")
        try:
            try:
                whole = body is not None and len(body) < 64 * 1024
                conn.write(head + body if whole else head)  # type: ignore[operator]
                if conn.reused and conn.write_refused():
                    # Checked before a streamed body is pulled: the request can still go elsewhere whole.
                    conn.nothing_sent = True
                    raise httpx.WriteError("Ollama had closed the kept-alive connection; nothing was sent")
                if body is not None:
                    if not whole:
                        conn.write(body)
                    await _drained(conn, timeouts.get("write"))
                else:
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


def _may_resend(conn: Connection, method: str, body: bytes | None) -> bool:
    """True when a request that failed on a pooled connection may go again on a new one (module doc)."""
    if not conn.reused or conn.got_bytes:
        return False
    if conn.nothing_sent:
        return True
    return conn.peer_closed and method in IDEMPOTENT_METHODS and body is not None


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
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("the upstream transport sends async bodies only (an httpx.AsyncClient's request)")
    async for part in stream:
        if not part:
            continue
        conn.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
        await _drained(conn, timeout)
    if chunked:
        conn.write(b"0\r\n\r\n")
