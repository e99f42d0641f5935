"""A raw HTTP/1.1 server on a socket whose every byte a test controls, for the upstream transport."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from proxy_app.http1_connection import Connection
from proxy_app.transport import LeanTransport

WAIT = 5.0  # seconds: the bound on every wait in this module


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Peer:
    """The server's side of one accepted connection, with the requests the client sent on it."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index  # 0 for the server's first connection, 1 for the next, ...
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []  # each as it came on the wire: head and framed body
        self.client_closed = asyncio.Event()  # set when a read found that the client hung up

    async def read_head(self) -> bytes | None:
        """The next request line and headers, or None once the client has hung up."""
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.client_closed.set()
            return None

    async def read_request(self) -> bytes | None:
        """The next whole request (recorded in ``requests``), or None once the client has hung up."""
        head = await self.read_head()
        if head is None:
            return None
        fields = header_fields(head)
        if fields.get(b"transfer-encoding") == b"chunked":
            body = await self._read_chunked()
        else:
            body = await self.reader.readexactly(int(fields.get(b"content-length", b"0")))
        self.requests.append(head + body)
        return head + body

    async def _read_chunked(self) -> bytes:
        raw = b""
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            raw += size_line + await self.reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return raw  # no trailers: the last chunk's CRLF ends the body

    async def send(self, *parts: bytes) -> None:
        """Write ``parts`` and wait until they are handed to the kernel."""
        for part in parts:
            self.writer.write(part)
        await self.writer.drain()

    async def wait_client_close(self) -> None:
        """Discard whatever else the client sends until it hangs up."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.client_closed.set()

    def shut_write(self) -> None:
        """Send a FIN now, synchronously (without a trip through the event loop)."""
        self.writer.get_extra_info("socket").shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Hang up with a TCP RST instead of a FIN."""
        linger = struct.pack("ii", 1, 0)
        self.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 that runs ``handler`` on each connection and keeps every Peer.

    A handler returning hangs up (FIN). An exception other than the client going away fails the
    test when the server stops.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.port = 0
        self._failures: list[BaseException] = []
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepts(self) -> int:
        """How many TCP connections the server has accepted."""
        return len(self.peers)

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(len(self.peers), reader, writer)
        self.peers.append(peer)
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-exchange: several tests make it do so
        except asyncio.CancelledError:
            pass  # stop() ends the handlers still waiting
        except Exception as exc:  # reported by stop()
            self._failures.append(exc)
        finally:
            writer.close()

    async def stop(self) -> None:
        """Close the listener and every connection; raise the first handler failure."""
        assert self._server is not None
        async with asyncio.timeout(WAIT):
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for peer in self.peers:
                peer.writer.close()
                with contextlib.suppress(ConnectionError):
                    await peer.writer.wait_closed()
            await self._server.wait_closed()
        if self._failures:
            raise self._failures[0]


def header_fields(head: bytes) -> dict[bytes, bytes]:
    """The header fields of a raw message head, names lowercased (the last of a repeated name wins)."""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
    return fields


def answering(response: bytes = OK, *, close: bool = False) -> Handler:
    """A handler that answers every request with ``response``; with ``close``, hangs up after one."""

    async def handle(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(response)
            if close:
                return

    return handle


def idle(transport: LeanTransport, server: RawServer) -> list[Connection]:
    """The connections ``transport`` keeps idle for ``server``."""
    return list(transport._idle.get(("127.0.0.1", server.port), ()))


def transport_of(kind: str) -> httpx.AsyncBaseTransport:
    """A fresh LeanTransport (``lean``) or httpx's httpcore-based transport (``httpcore``)."""
    return LeanTransport() if kind == "lean" else httpx.AsyncHTTPTransport()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    """Start RawServers; all are stopped (and their handler failures raised) after the test."""
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        servers.append(await RawServer(handler).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def lean() -> AsyncIterator[LeanTransport]:
    """The transport under test, closed after the test."""
    transport = LeanTransport()
    yield transport
    await transport.aclose()


@pytest.fixture
async def client(lean: LeanTransport) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on ``lean``."""
    async with httpx.AsyncClient(transport=lean) as client:
        yield client
