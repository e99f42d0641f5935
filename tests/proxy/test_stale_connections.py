"""A kept-alive connection that died while it idled: the request goes again on a new one, when safe.

The rule is in ``proxy_app.transport``'s docstring. The close "crosses" the request on the wire
when the event loop has not seen it yet as the connection leaves the pool: these tests stage that
by pausing reading on the idle connection and standing in for the pool's readiness check, which
resumes reading and reports nothing waiting, as it would a moment before the close arrived.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.errors import BadGateway
from proxy_app.http1_connection import Connection
from proxy_app.transport import LeanTransport
from proxy_app.upstream import Upstream
from tests.proxy import raw_server
from tests.proxy.raw_server import OK, WAIT, Peer, RawServer, answering, idle
from tests.waiting import await_until

# The loopback server, the transport under test and a client on it (fixtures).
serve, lean, client = raw_server.serve, raw_server.lean, raw_server.client

REAL_READABLE_NOW = Connection.readable_now


@pytest.fixture
def close_unseen(monkeypatch):
    """Make the pool's check miss a close that is already on its way (it lands right after)."""

    def check_before_the_close_lands(conn: Connection) -> bool:
        conn._transport.resume_reading()  # the loop will see the close from now on
        return False

    monkeypatch.setattr(Connection, "readable_now", check_before_the_close_lands)


async def pooled_then(
    client: httpx.AsyncClient, lean: LeanTransport, server: RawServer, hang_up: asyncio.Event
) -> Connection:
    """One request on a new connection, then the server hangs up on it while the loop does not look."""
    assert (await client.get(server.url + "/first")).content == b"ok"
    [pooled] = idle(lean, server)
    pooled._transport.pause_reading()
    hang_up.set()
    await await_until(
        lambda: REAL_READABLE_NOW(pooled), timeout=WAIT
    )  # the FIN or RST is in the client's socket
    assert pooled.usable  # ...and the connection does not know yet
    return pooled


def closing_after_one_answer(hang_up: asyncio.Event, how: str):
    """Peer 0 answers once, then on ``hang_up`` closes (FIN) or resets (RST); later peers answer all."""

    async def handle(peer: Peer) -> None:
        if peer.index > 0:
            await answering()(peer)
            return
        await peer.read_request()
        await peer.send(OK)
        await hang_up.wait()
        if how == "reset":
            peer.reset()
            return
        peer.shut_write()  # the idle timeout: a FIN, and whatever comes next is read and dropped
        await peer.read_request()
        await peer.wait_client_close()

    return handle


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_get_written_on_a_connection_the_server_just_closed_goes_again_on_a_new_one(
    serve, lean, client, close_unseen, method
):
    hang_up = asyncio.Event()
    server = await serve(closing_after_one_answer(hang_up, "fin"))
    async with asyncio.timeout(WAIT):
        await pooled_then(client, lean, server, hang_up)
        response = await client.request(method, server.url + "/api/tags")
        await server.peers[0].client_closed.wait()
    assert response.status_code == 200
    assert server.accepts == 2
    # The request did reach the closing server, which dropped it; the new connection answered it.
    assert [r.split(b" ")[1] for r in server.peers[0].requests] == [b"/first", b"/api/tags"]
    assert [r.split(b" ")[:2] for r in server.peers[1].requests] == [[method.encode(), b"/api/tags"]]


async def test_a_post_written_on_a_connection_the_server_just_closed_is_not_sent_twice(
    serve, lean, client, close_unseen
):
    hang_up = asyncio.Event()
    server = await serve(closing_after_one_answer(hang_up, "fin"))
    async with asyncio.timeout(WAIT):
        await pooled_then(client, lean, server, hang_up)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(server.url + "/api/chat", content=b'{"model":"m"}')
        await server.peers[0].client_closed.wait()
    assert server.accepts == 1  # it may have started: Ollama never gets it a second time
    assert [r.split(b" ")[1] for r in server.peers[0].requests] == [b"/first", b"/api/chat"]


@pytest.mark.parametrize("body", ["bytes", "streamed"])
async def test_a_post_the_socket_refused_goes_on_a_new_connection_once(
    serve, lean, client, close_unseen, body
):
    hang_up = asyncio.Event()
    server = await serve(closing_after_one_answer(hang_up, "reset"))
    pulled: list[bytes] = []

    async def stream():
        for part in (b'{"model":', b'"m"}'):
            pulled.append(part)
            yield part

    async with asyncio.timeout(WAIT):
        await pooled_then(client, lean, server, hang_up)
        content = b'{"model":"m"}' if body == "bytes" else stream()
        response = await client.post(server.url + "/api/chat", content=content)
    assert response.status_code == 200
    assert server.accepts == 2
    assert len(server.peers[0].requests) == 1  # the reset connection got only the first request
    [post] = server.peers[1].requests
    assert post.startswith(b"POST /api/chat ") and b'{"model"' in post and b'"m"}' in post
    assert pulled == ([] if body == "bytes" else [b'{"model":', b'"m"}'])  # pulled once, for the new one


async def reset_after_reading_the_second_request(peer: Peer) -> None:
    """Peer 0 answers its first request, then resets once the next one is read; others answer."""
    if peer.index > 0:
        await answering()(peer)
        return
    await peer.read_request()
    await peer.send(OK)
    await peer.read_request()
    peer.reset()


@pytest.fixture
def unreachable() -> list[tuple[str, str]]:
    """The backends the Upstream reported unreachable (what takes one out of rotation)."""
    return []


@pytest.fixture
def upstream(lean, settings_factory, unreachable) -> Upstream:
    """An Upstream on ``lean`` that records its connect failures in ``unreachable``."""
    settings = settings_factory(FIRST_BYTE_TIMEOUT="3", IDLE_TIMEOUT="3")
    return Upstream(lean, settings, lambda url, error: unreachable.append((url, error)))


async def test_a_post_reset_after_the_server_read_it_is_a_502_and_not_retried(serve, upstream, unreachable):
    server = await serve(reset_after_reading_the_second_request)
    body = json.dumps({"model": "m", "stream": False}).encode()
    async with asyncio.timeout(WAIT):
        first = await upstream.open(server.url, "POST", "/api/chat", content=body, headers=[])
        await first.read()
        await first.aclose()
        with pytest.raises(BadGateway) as refused:
            await upstream.open(server.url, "POST", "/api/chat", content=body, headers=[])
    assert refused.value.status == 502
    assert server.accepts == 1
    assert unreachable == []  # a reused connection's failure does not take the backend out


async def test_a_get_reset_after_the_server_read_it_goes_again_on_a_new_connection(serve, upstream):
    server = await serve(reset_after_reading_the_second_request)
    async with asyncio.timeout(WAIT):
        first = await upstream.open(server.url, "GET", "/api/tags", content=None, headers=[])
        await first.read()
        await first.aclose()
        second = await upstream.open(server.url, "GET", "/api/tags", content=None, headers=[])
        assert (second.status_code, await second.read()) == (200, b"ok")
        await second.aclose()
    assert server.accepts == 2
    assert len(server.peers[0].requests) == 2 and len(server.peers[1].requests) == 1


async def test_the_new_connection_is_tried_once_and_its_failure_is_the_callers(serve, client):
    async def handle(peer: Peer) -> None:
        if peer.index == 0:
            await peer.read_request()
            await peer.send(OK)
        await peer.read_request()  # then hangs up unanswered, on every connection

    server = await serve(handle)
    async with asyncio.timeout(WAIT):
        await client.get(server.url)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url)
    assert server.accepts == 2


TAGS_ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 39\r\n\r\n{"models":[{"name":"llama3.2:latest"}]}'


@pytest.mark.parametrize("new_connection", ["answers", "hangs up"])
async def test_a_health_check_counts_only_a_new_connections_failure(serve, client, new_connection):
    async def handle(peer: Peer) -> None:
        if peer.index == 0:
            for _ in range(2):  # one round: /api/tags, then /api/ps
                await peer.read_request()
                await peer.send(TAGS_ANSWER)
            await peer.read_request()  # the next round's check: read, dropped, and a FIN
        elif new_connection == "answers":
            await answering(TAGS_ANSWER)(peer)
        else:
            await peer.read_request()

    server = await serve(handle)
    pool = BackendPool([Backend(server.url, 1)], client, interval=60)
    [backend] = pool.backends
    async with asyncio.timeout(WAIT):
        await pool.check_all()
        assert backend.healthy and backend.models == frozenset({"llama3.2:latest"})
        await pool.check_all()
    assert server.accepts == 2
    if new_connection == "answers":
        assert backend.healthy and backend.last_error is None
    else:
        assert not backend.healthy
        assert backend.last_error == "RemoteProtocolError: Server disconnected without sending a response."
