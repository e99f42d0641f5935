"""LeanTransport against real sockets: raw asyncio servers on 127.0.0.1 that send exact bytes.

Each test stages one behaviour of an HTTP/1.1 server (framing, keep-alive, misbehaviour, slowness)
and drives the transport the way the gateway does, through ``httpx.AsyncClient``. Where httpcore's
behaviour is the reference, the same test also runs on httpx's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import select
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from proxy_app.http1_connection import READ_HIGH_WATER, Connection
from proxy_app.transport import LeanTransport
from proxy_app.upstream import make_client
from tests.proxy import raw_server
from tests.proxy.raw_server import (
    OK,
    WAIT,
    Peer,
    answering,
    header_fields,
    idle,
    transport_of,
)
from tests.waiting import await_until

# The loopback server, the transport under test and a client on it (fixtures).
serve, lean, client = raw_server.serve, raw_server.lean, raw_server.client

ASYNCIO_READ_SIZE = 256 * 1024  # the most an asyncio socket transport reads at once


# --- a scriptable server -------------------------------------------------------------------------


def payload(size: int) -> bytes:
    """``size`` reproducible pseudo-random bytes (a repeated pattern could hide reordering)."""
    return random.Random(size).randbytes(size)


def chunked(*parts: bytes) -> bytes:
    """``parts`` in chunked transfer coding, as LeanTransport frames a streamed request body."""
    return b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


# The same behaviour on LeanTransport and on httpx's own (httpcore) transport, which is the reference.
both_transports = pytest.mark.parametrize("kind", ["lean", "httpcore"])


# --- responses: status, headers and the three ways a body can end ---------------------------------


async def test_content_length_response_keeps_status_reason_raw_headers_and_body(serve, client):
    server = await serve(
        answering(
            b"HTTP/1.1 200 Totally Fine\r\n"
            b"Content-Type: application/x-ndjson\r\n"
            b"X-Trace-ID: abc\r\n"
            b"set-cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"Content-Length: 11\r\n"
            b"\r\n"
            b'{"done":1}\n'
        )
    )
    async with asyncio.timeout(WAIT):
        response = await client.get(server.url + "/api/tags")
    assert response.status_code == 200
    assert response.reason_phrase == "Totally Fine"
    assert response.http_version == "HTTP/1.1"
    assert response.headers.raw == [
        (b"Content-Type", b"application/x-ndjson"),
        (b"X-Trace-ID", b"abc"),
        (b"set-cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"11"),
    ]
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.content == b'{"done":1}\n'


async def test_a_response_head_trickled_byte_by_byte_is_parsed_whole(serve, client):
    head = b"HTTP/1.1 404 Not Here\r\nX-Long-Header-Name: some longer value\r\nContent-Length: 4\r\n\r\n"

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        for byte in head + b"gone":
            await peer.send(bytes([byte]))
            await asyncio.sleep(0.001)  # let the client read each byte on its own
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        response = await client.get(server.url)
    assert (response.status_code, response.reason_phrase) == (404, "Not Here")
    assert response.headers.raw == [(b"X-Long-Header-Name", b"some longer value"), (b"Content-Length", b"4")]
    assert response.content == b"gone"


async def test_a_chunked_body_is_delivered_as_it_is_sent_not_buffered(serve, lean, client):
    send_first = asyncio.Event()
    send_second = asyncio.Event()
    second_sent = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await send_first.wait()  # the client is already waiting for the body
        await peer.send(b"5\r\nfirst\r\n")
        await send_second.wait()
        await peer.send(b"6\r\nsecond\r\n0\r\n\r\n")
        second_sent.set()
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT), client.stream("GET", server.url) as response:
        chunks = response.aiter_raw()
        send_first.set()
        assert await anext(chunks) == b"first"
        assert not second_sent.is_set()
        send_second.set()
        assert b"".join([chunk async for chunk in chunks]) == b"second"
    assert len(idle(lean, server)) == 1  # read to its end: the connection is kept


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
    ],
    ids=["connection-close", "unframed-http11", "http10"],
)
async def test_a_close_delimited_body_reads_to_eof_and_its_connection_is_not_reused(
    serve, lean, client, head
):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(head, b"abc")
        await asyncio.sleep(0.01)
        await peer.send(b"def")  # then hang up: that ends the body

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        first = await client.get(server.url)
        assert first.content == b"abcdef"
        assert idle(lean, server) == []
        second = await client.get(server.url)
    assert second.content == b"abcdef"
    assert server.accepts == 2


async def test_head_with_content_length_completes_with_an_empty_body(serve, lean, client):
    async def handle(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.startswith(b"HEAD "):
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                await peer.send(OK)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        response = await client.head(server.url)
        assert response.content == b""
        assert response.headers["content-length"] == "1234"
        # The parser would wait for 1234 body bytes, so the connection is dropped rather than reused.
        await server.peers[0].client_closed.wait()
        assert (await client.get(server.url)).status_code == 200
    assert server.peers[0].requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"],
    ids=["100", "103"],
)
async def test_interim_responses_are_skipped_for_the_final_one(serve, client, interim):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(interim)
        await asyncio.sleep(0.01)  # the final response in a later read
        await peer.send(b"HTTP/1.1 200 Fine\r\nContent-Length: 5\r\n\r\nhello")
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        response = await client.get(server.url)
    assert (response.status_code, response.reason_phrase) == (200, "Fine")
    assert response.headers.raw == [(b"Content-Length", b"5")]  # nothing left over from the interim one
    assert response.content == b"hello"


# --- keep-alive pool ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["content-length", "chunked", "204", "http10-keep-alive"],
)
async def test_sequential_requests_share_one_connection(serve, lean, client, response):
    server = await serve(answering(response))
    async with asyncio.timeout(WAIT):
        for _ in range(3):
            assert (await client.get(server.url)).is_success
    assert server.accepts == 1
    assert len(server.peers[0].requests) == 3
    assert len(idle(lean, server)) == 1


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http10"],
)
async def test_a_server_that_will_close_gets_a_new_connection_next_time(serve, lean, client, response):
    server = await serve(answering(response))  # keeps reading: the client has to be the one to hang up
    async with asyncio.timeout(WAIT):
        assert (await client.get(server.url)).content == b"ok"
        await server.peers[0].client_closed.wait()
        assert (await client.get(server.url)).content == b"ok"
    assert server.accepts == 2
    assert idle(lean, server) == []


async def test_a_partly_read_response_closes_its_connection(serve, lean, client):
    async def handle(peer: Peer) -> None:
        if peer.index == 0:
            await peer.read_request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")  # 6 bytes never come
            await peer.wait_client_close()
        else:
            await answering()(peer)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        async with client.stream("GET", server.url) as response:
            assert await anext(response.aiter_raw()) == b"abcd"
        await server.peers[0].client_closed.wait()
        assert idle(lean, server) == []
        assert (await client.get(server.url)).content == b"ok"
    assert server.accepts == 2


async def test_the_pool_keeps_at_most_max_keepalive_idle_connections(serve):
    arrived = 0
    all_arrived = asyncio.Event()

    async def handle(peer: Peer) -> None:
        nonlocal arrived
        await peer.read_request()
        arrived += 1
        if arrived == 4:
            all_arrived.set()
        await all_arrived.wait()  # hold every answer until four connections are open
        await peer.send(OK)
        await answering()(peer)

    server = await serve(handle)
    transport = LeanTransport(max_keepalive=2)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        responses = await asyncio.gather(*(client.get(server.url) for _ in range(4)))
        assert [response.content for response in responses] == [b"ok"] * 4
        assert server.accepts == 4
        assert len(idle(transport, server)) == 2
        await await_until(
            lambda: sum(peer.client_closed.is_set() for peer in server.peers) == 2, timeout=WAIT
        )
        kept = {peer.index for peer in server.peers if not peer.client_closed.is_set()}
        assert len(kept) == 2
        # The next two requests use the kept connections; no new one is opened.
        await asyncio.gather(*(client.get(server.url) for _ in range(2)))
        assert server.accepts == 4
        assert {peer.index for peer in server.peers if len(peer.requests) == 2} == kept


@pytest.mark.costly  # waits out the expiry
async def test_a_connection_idle_past_the_keepalive_expiry_is_closed_and_a_new_one_opened(serve):
    """UPSTREAM_KEEPALIVE_EXPIRY: the gateway closes an idle connection before the server would."""
    server = await serve(answering())
    transport = LeanTransport(keepalive_expiry=0.3)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url)
        await asyncio.sleep(0.05)
        await client.get(server.url)  # within the expiry: the same connection
        assert server.accepts == 1
        await asyncio.sleep(0.4)
        assert (await client.get(server.url)).content == b"ok"
        assert server.accepts == 2  # past it: a new connection...
        await await_until(
            lambda: server.peers[0].client_closed.is_set(), timeout=WAIT
        )  # ...and the old one closed by us
        assert [len(peer.requests) for peer in server.peers] == [2, 1]


async def test_an_idle_connection_the_server_closed_is_replaced(serve, lean, client):
    hang_up = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)  # says keep-alive...
        if peer.index == 0:
            await hang_up.wait()  # ...but times the idle connection out
        else:
            await answering()(peer)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        await client.get(server.url)
        [pooled] = idle(lean, server)
        hang_up.set()
        await await_until(lambda: not pooled.usable, timeout=WAIT)  # the loop delivers the EOF
        assert (await client.get(server.url)).content == b"ok"
    assert server.accepts == 2


async def test_unsolicited_bytes_on_an_idle_connection_discard_it(serve, lean, client):
    stray = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if peer.index == 0:
            await stray.wait()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
            await peer.wait_client_close()
        else:
            await answering()(peer)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        await client.get(server.url)
        assert len(idle(lean, server)) == 1
        stray.set()
        await server.peers[0].client_closed.wait()  # the client hung up on it
        response = await client.get(server.url)
    assert response.content == b"ok"
    assert server.accepts == 2


async def test_a_request_cancelled_before_the_response_closes_its_connection(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        if peer.index == 0:
            await peer.wait_client_close()  # never answers
        else:
            await peer.send(OK)
            await answering()(peer)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):  # as the gateway's first-byte timeout cancels
                await client.get(server.url)
        await server.peers[0].client_closed.wait()
        assert idle(lean, server) == []
        assert (await client.get(server.url)).content == b"ok"


async def test_a_response_cancelled_mid_body_closes_its_connection(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        await peer.wait_client_close()  # the rest never comes

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        async with client.stream("GET", server.url) as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"abcd"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):  # as the gateway's idle timeout cancels
                    await anext(chunks)
        await server.peers[0].client_closed.wait()
    assert idle(lean, server) == []


@both_transports
async def test_a_connection_closed_just_before_reuse_is_not_used(serve, kind):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if peer.index == 0:
            await peer.wait_client_close()
        else:
            await answering()(peer)

    server = await serve(handle)
    transport = transport_of(kind)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url)
        server.peers[0].shut_write()  # the server's idle timeout fires just as the next request starts
        response = await client.get(server.url)
    assert response.content == b"ok"
    assert server.accepts == 2


# --- errors become httpx exceptions ---------------------------------------------------------------


async def test_connection_refused_is_connect_error(client):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
        async with asyncio.timeout(WAIT):
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{placeholder.getsockname()[1]}/")


@contextlib.contextmanager
def listener_with_full_backlog() -> Iterator[int]:
    """The port of a loopback listener that never accepts and whose backlog is full.

    Linux drops a SYN to such a listener, so connecting to it hangs until the client gives up.
    Skips the test where the kernel completes the handshake anyway.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        probe = stack.enter_context(socket.socket())
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", port))
        _, writable, _ = select.select([], [probe], [], 0.2)
        if writable:
            pytest.skip("this kernel completes connections to a listener with a full backlog")
        yield port


@pytest.mark.costly  # waits out a timeout
async def test_connect_timeout_is_connect_timeout(client):
    with listener_with_full_backlog() as port:
        async with asyncio.timeout(WAIT):
            with pytest.raises(httpx.ConnectTimeout):
                await client.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5, connect=0.2))


async def test_an_os_connect_timeout_without_a_timeout_set_is_an_httpx_error(monkeypatch, lean):
    async def kernel_timed_out(*args, **kwargs):
        raise OSError(errno.ETIMEDOUT, "Connection timed out")  # what a SYN nobody answers ends in

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", kernel_timed_out)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=lean, timeout=None) as client:
        with pytest.raises((httpx.ConnectTimeout, httpx.ConnectError)):
            await client.get("http://127.0.0.1:9/")


async def test_a_server_that_hangs_up_without_answering_is_remote_protocol_error(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url)
    assert idle(lean, server) == []


async def test_garbage_instead_of_a_status_line_is_remote_protocol_error(serve, lean, client):
    server = await serve(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    async with asyncio.timeout(WAIT):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await client.get(server.url)
    assert idle(lean, server) == []


@pytest.mark.parametrize(
    ("head", "first_part"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"abcd"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"4\r\nabcd\r\n"),
    ],
    ids=["content-length", "chunked"],
)
@pytest.mark.parametrize("hang_up", ["fin", "rst"])
async def test_a_body_cut_short_raises_while_it_is_read(serve, lean, client, head, first_part, hang_up):
    cut = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(head, first_part)
        await cut.wait()
        if hang_up == "rst":
            peer.reset()

    server = await serve(handle)
    expected = httpx.RemoteProtocolError if hang_up == "fin" else httpx.ReadError
    async with asyncio.timeout(WAIT), client.stream("GET", server.url) as response:
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"abcd"
        cut.set()
        with pytest.raises(expected):
            await anext(chunks)
    assert idle(lean, server) == []


async def test_malformed_chunk_framing_is_remote_protocol_error(serve, client):
    server = await serve(
        answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\nnope\r\n")
    )
    async with asyncio.timeout(WAIT), client.stream("GET", server.url) as response:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await response.aread()


async def test_a_server_that_never_answers_is_read_timeout_when_one_is_set(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_client_close()  # silent until the client gives up

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5, read=0.2))
        await server.peers[0].client_closed.wait()
    assert idle(lean, server) == []


async def test_a_body_that_stalls_is_read_timeout_and_its_connection_is_closed(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        async with client.stream("GET", server.url, timeout=httpx.Timeout(5, read=0.2)) as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"abcd"
            with pytest.raises(httpx.ReadTimeout):
                await anext(chunks)
        await server.peers[0].client_closed.wait()
    assert idle(lean, server) == []


@pytest.mark.costly  # waits for a slow answer
async def test_without_a_read_timeout_a_slow_answer_is_waited_for(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await asyncio.sleep(0.3)
        await peer.send(OK)
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        response = await client.get(server.url, timeout=httpx.Timeout(5, read=None))
    assert response.content == b"ok"


@pytest.mark.costly  # waits out a timeout
async def test_a_request_body_the_server_never_reads_is_write_timeout(serve, lean, client):
    async def handle(peer: Peer) -> None:
        await peer.read_head()
        await asyncio.sleep(WAIT)  # never reads the body (stop() cancels this)

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        with pytest.raises(httpx.WriteTimeout):
            await client.post(server.url, content=bytes(32 << 20), timeout=httpx.Timeout(5, write=0.2))
    assert idle(lean, server) == []


@both_transports
async def test_a_reset_during_a_close_delimited_body_is_read_error(serve, kind):
    cut = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcd")
        await cut.wait()
        peer.reset()

    server = await serve(handle)
    transport = transport_of(kind)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", server.url) as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"abcd"
            cut.set()
            with pytest.raises(httpx.ReadError):
                await anext(chunks)


@both_transports
async def test_bytes_after_a_complete_response_do_not_leak_into_it(serve, kind):
    server = await serve(
        answering(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nbye"
        )
    )
    transport = transport_of(kind)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        response = await client.get(server.url)
    assert (response.status_code, response.content) == (200, b"ok")


@both_transports
async def test_an_early_response_to_a_request_still_being_sent_is_returned(serve, kind):
    async def handle(peer: Peer) -> None:
        await peer.read_head()
        # A server may answer before it has read the whole body (too large, malformed), then
        # half-close and read on, discarding, so that the client gets to see the answer.
        await peer.send(
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig"
        )
        peer.shut_write()
        await peer.wait_client_close()

    server = await serve(handle)
    transport = transport_of(kind)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        response = await client.post(server.url, content=bytes(32 << 20))
    assert (response.status_code, response.content) == (413, b"big")


# --- request heads and bodies ---------------------------------------------------------------------


async def test_the_request_head_carries_method_target_and_headers(serve, client):
    server = await serve(answering())
    async with asyncio.timeout(WAIT):
        await client.get(server.url + "/api/x%20y?q=1&r=%2F", headers=[("X-Case", "Kept"), ("x-two", "2")])
    head = server.peers[0].requests[0]
    assert head.startswith(b"GET /api/x%20y?q=1&r=%2F HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in head
    assert b"\r\nX-Case: Kept\r\nx-two: 2\r\n" in head
    assert head.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("size", [11, 100 * 1024], ids=["small", "over-64k"])
async def test_a_bytes_body_is_sent_with_its_content_length(serve, client, size):
    body = payload(size)
    server = await serve(answering())
    async with asyncio.timeout(WAIT):
        await client.post(server.url, content=body)
    head, _, received = server.peers[0].requests[0].partition(b"\r\n\r\n")
    assert header_fields(head + b"\r\n")[b"content-length"] == str(size).encode()
    assert b"transfer-encoding" not in header_fields(head + b"\r\n")
    assert received == body


async def test_a_streamed_body_is_sent_chunked_byte_for_byte(serve, client):
    async def body() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b""  # an empty part must not end the body early
        yield b"cde" * 10

    server = await serve(answering())
    async with asyncio.timeout(WAIT):
        await client.post(server.url, content=body())
    head, _, received = server.peers[0].requests[0].partition(b"\r\n\r\n")
    assert header_fields(head + b"\r\n")[b"transfer-encoding"] == b"chunked"
    assert received == b"2\r\nab\r\n1e\r\n" + b"cde" * 10 + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "stream"])
async def test_a_large_body_to_a_slow_reader_arrives_intact(serve, client, monkeypatch, streamed):
    body = payload(5 << 20)
    pieces = [body[at : at + (1 << 20)] for at in range(0, len(body), 1 << 20)]
    expected = chunked(*pieces) if streamed else body
    writer_paused = asyncio.Event()
    paused: list[Connection] = []
    pause_writing = Connection.pause_writing

    def spy(self: Connection) -> None:
        paused.append(self)
        writer_paused.set()
        pause_writing(self)

    monkeypatch.setattr(Connection, "pause_writing", spy)
    received = bytearray()

    async def handle(peer: Peer) -> None:
        await peer.read_head()
        await writer_paused.wait()  # the client's socket buffer has filled up
        while len(received) < len(expected):
            received.extend(await peer.reader.read(64 * 1024))
            await asyncio.sleep(0.001)
        await peer.send(OK)
        await peer.wait_client_close()

    backlog: list[int] = []  # bytes still queued in the client when the next piece is asked for

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            if paused:
                backlog.append(paused[0]._transport.get_write_buffer_size())
            yield piece

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        response = await client.post(server.url, content=stream() if streamed else body)
    assert response.content == b"ok"
    assert writer_paused.is_set()
    assert bytes(received) == expected
    if streamed:  # each piece waited for the previous one to drain to the socket's buffer
        assert backlog
        assert max(backlog) <= 64 * 1024  # asyncio's default high-water mark for writes


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Note", "a\r\nX-Injected: 1"),
        ("X-Note", "a\nX-Injected: 1"),
        ("X-Note", "a\rX-Injected: 1"),
        ("X-Note\r\nX-Injected", "1"),
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name"],
)
async def test_cr_or_lf_in_a_header_is_refused_before_anything_is_sent(serve, lean, client, name, value):
    server = await serve(answering())
    async with asyncio.timeout(WAIT):
        await client.get(server.url)  # a pooled connection the refused request must not touch
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(server.url, headers={name: value})
        assert (await client.get(server.url)).content == b"ok"
    assert server.accepts == 1
    assert len(server.peers[0].requests) == 2
    assert not any(b"X-Injected" in request for request in server.peers[0].requests)


# --- backpressure on a large response -------------------------------------------------------------


async def test_a_large_response_read_slowly_arrives_intact_and_bounded(serve, lean, client, monkeypatch):
    body = payload(8 << 20)
    buffered: list[int] = []
    data_received = Connection.data_received

    def spy(self: Connection, data: bytes) -> None:
        data_received(self, data)
        buffered.append(self._buffered)

    monkeypatch.setattr(Connection, "data_received", spy)
    server = await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)))
    received = bytearray()
    async with asyncio.timeout(WAIT), client.stream("GET", server.url) as response:
        async for chunk in response.aiter_raw():
            received.extend(chunk)
            await asyncio.sleep(0.002)  # a slow consumer
    assert bytes(received) == body
    # Reading stopped once the buffer passed the high-water mark, so at most one more read landed.
    assert max(buffered) > READ_HIGH_WATER
    assert max(buffered) <= READ_HIGH_WATER + ASYNCIO_READ_SIZE
    assert len(idle(lean, server)) == 1  # reading resumed and finished cleanly


# --- closing the transport, https, make_client ----------------------------------------------------


async def test_aclose_closes_idle_connections_and_refuses_new_requests(serve, lean, client):
    server = await serve(answering())
    async with asyncio.timeout(WAIT):
        await client.get(server.url)
        await lean.aclose()
        await server.peers[0].client_closed.wait()
        with pytest.raises(httpx.ConnectError, match="closed"):
            await client.get(server.url)
    assert server.accepts == 1
    assert lean._idle == {}


async def test_a_response_open_during_aclose_finishes_and_its_connection_is_closed(serve, lean, client):
    release = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await release.wait()
        await peer.send(b"cd")
        await peer.wait_client_close()

    server = await serve(handle)
    async with asyncio.timeout(WAIT), client.stream("GET", server.url) as response:
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"ab"
        await lean.aclose()
        release.set()
        assert b"".join([chunk async for chunk in chunks]) == b"cd"
        await server.peers[0].client_closed.wait()
    assert lean._idle == {}


class RecordingMockTransport(httpx.MockTransport):
    """A MockTransport that notes whether it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_https_goes_to_the_fallback_transport(serve):
    seen: list[httpx.URL] = []

    def fallback_handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(218, content=b"from the fallback")

    server = await serve(answering())
    fallback = RecordingMockTransport(fallback_handler)
    transport = LeanTransport(fallback=fallback)
    async with asyncio.timeout(WAIT), httpx.AsyncClient(transport=transport) as client:
        secure = await client.get("https://ollama.example:11434/api/tags")
        plain = await client.get(server.url)
    assert (secure.status_code, secure.content) == (218, b"from the fallback")
    assert seen == [httpx.URL("https://ollama.example:11434/api/tags")]
    assert plain.content == b"ok"  # http stayed on the lean path
    assert server.accepts == 1
    assert fallback.closed  # closing the client closed the fallback too


async def test_make_client_uses_the_lean_transport_by_default(serve, settings):
    server = await serve(answering())
    client = make_client(settings)
    try:
        assert isinstance(client._transport, LeanTransport)
        async with asyncio.timeout(WAIT):
            for _ in range(2):
                response = await client.post(server.url + "/api/chat", content=b"{}")
                assert response.content == b"ok"
        assert server.accepts == 1
        assert server.peers[0].requests[0].startswith(b"POST /api/chat HTTP/1.1\r\n")
    finally:
        await client.aclose()
