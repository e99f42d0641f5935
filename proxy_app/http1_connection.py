"""One HTTP/1.1 connection to Ollama as an asyncio Protocol feeding httptools (llhttp, in C).

The parsing half of LeanTransport (``proxy_app.transport``): it frames one response at a time,
skips interim (1xx) responses, keeps trailers out of the headers, refuses transfer codings other
than chunked, and turns every parser or socket failure into httpx's own error.
"""

from __future__ import annotations

import asyncio
import select

import httptools
import httpx

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
        self.reused = False  # taken from the pool: it carried an answered request before this one
        self.idle_since = 0.0  # loop time it went back to the pool
        self.peer_closed = False  # the server closed or reset it (not our own close)
        self.nothing_sent = False  # the socket refused the request's first bytes (see write_refused)

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
        except httptools.HttpParserCallbackError as exc:
            # A callback refused the response (an unsupported transfer coding): its own error.
            refused = exc.__context__
            if not isinstance(refused, httpx.RemoteProtocolError):
                refused = httpx.RemoteProtocolError(f"malformed response from Ollama: {exc}")
            self._fail(refused)
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
        # After the head, fields are trailers: not part of the response's headers (httpcore drops them).
        if not self._stray and not self.headers_done:
            # llhttp strips the whitespace before a value, not after it (RFC 9112 §5: OWS is not part of it).
            self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:  # noqa: D102
        if self._stray:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self.reason, self.headers = b"", []  # an interim response: the real one follows
            return
        self.status = status
        codings = [value for name, value in self.headers if name.lower() == b"transfer-encoding"]
        if codings and [value.lower() for value in codings] != [CHUNKED_TE]:
            # llhttp would read "gzip" as close-delimited and "gzip, chunked" as chunked, passing on
            # bytes nobody decodes; like h11, only chunked alone is accepted.
            raise httpx.RemoteProtocolError(f"unsupported Transfer-Encoding from Ollama: {codings!r}")
        self._framed = (
            bool(codings)
            or status in (204, 304)
            or any(name.lower() == b"content-length" for name, _ in self.headers)
        )
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
        self.peer_closed = True
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

    @property
    def has_unread_body(self) -> bool:
        """Body bytes arrived that the reader has not taken yet."""
        return bool(self._chunks)

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
        self._stray = self.nothing_sent = False
        self.head_only = head_only
        self.busy = True

    def write(self, data: bytes) -> None:
        """Queue bytes on the socket."""
        if self._transport is None:
            raise ConnectionError("the connection to Ollama is not open")
        self._transport.write(data)

    def write_refused(self) -> bool:
        """True when the socket refused the bytes just written (EPIPE, ECONNRESET): none left.

        asyncio sends at once when nothing is queued; a send that fails closes the transport on
        the spot, so a closing transport right after the first write means no byte was taken.
        """
        return self._transport is None or self._transport.is_closing()

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
