"""common.door's pure parts: refusals and the open-file limit (the rest: tests/proxy/test_door.py)."""

from __future__ import annotations

import asyncio
import resource
import socket
from ipaddress import ip_network

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from common.door import BODY_BACKSTOP_GRACE, LONG_BODY, DoorLimits, door_protocol
from common.door_parts import descriptors_needed, raise_descriptor_limit, refusal
from common.launcher import prepare_door
from common.settings import ConfigError, Settings


def test_a_refusal_is_a_complete_json_response_that_closes():
    response = refusal(431, "request head too large")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert body == b'{"error": "request head too large"}'


def test_the_soft_limit_is_raised_to_what_the_cap_needs_within_the_hard_limit():
    calls = []

    def fake(soft: int, hard: int):
        return (lambda _which: (soft, hard)), (lambda _which, limits: calls.append(limits))

    assert raise_descriptor_limit(descriptors_needed(1000), *fake(1024, 1_048_576)) == (1024, 2256, 1_048_576)
    assert calls == [(2256, 1_048_576)]
    calls.clear()
    assert raise_descriptor_limit(50_000, *fake(1024, 20_000)) == (1024, 20_000, 20_000)
    assert calls == [(20_000, 20_000)]
    calls.clear()
    assert raise_descriptor_limit(500, *fake(1024, 20_000)) == (1024, 1024, 20_000)
    assert raise_descriptor_limit(500, *fake(1024, resource.RLIM_INFINITY))[1] == 1024
    assert calls == []


class Transport(asyncio.Transport):
    """An in-memory transport with a chosen peer address; records writes and closing."""

    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer, self.written, self.closed = peer, b"", False
        self.protocol = None
        self.sock: socket.socket | None = None  # a real socket, when a test needs unread bytes in one

    def pause_reading(self) -> None:
        """Nothing to pause in memory."""

    def resume_reading(self) -> None:
        """Nothing to resume in memory."""

    def get_extra_info(self, name: str, default=None):
        """The peer and local addresses."""
        extra = {"peername": (self.peer, 40000), "sockname": ("127.0.0.1", 8080), "socket": self.sock}
        return extra.get(name, default)

    def write(self, data) -> None:
        """Keep what was written."""
        self.written += bytes(data)

    def is_closing(self) -> bool:
        """Whether it was closed."""
        return self.closed

    def close(self) -> None:
        """Close it; the protocol hears of it on the next turn of the loop, as with a socket."""
        if not self.closed and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self.closed = True


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _opener(app=_app, keepalive: float = 5.0, **limits):
    config = Config(app, lifespan="off", log_level="warning", timeout_keep_alive=keepalive)
    config.load()
    limits.setdefault("pending_grace", 0.0)
    protocol = door_protocol(DoorLimits(head_timeout=10, max_head_size=4096, **limits))
    state = ServerState()

    def open_from(peer: str) -> Transport:
        transport = Transport(peer)
        transport.protocol = protocol(config=config, server_state=state, app_state={})
        transport.protocol.connection_made(transport)
        return transport

    return open_from


async def settle() -> None:
    """Let the grace timers of the connections opened so far run."""
    await asyncio.sleep(0.01)


async def test_trusted_proxies_are_exempt_from_the_per_ip_pending_cap():
    open_from = _opener(
        max_connections=100, max_pending_per_ip=2, trusted_proxies=(ip_network("10.0.0.0/8"),)
    )
    proxied = [open_from("10.0.0.1") for _ in range(5)]
    await settle()
    assert [t.closed for t in proxied] == [False] * 5
    others = [open_from("192.0.2.1") for _ in range(2)]
    await settle()
    others.append(open_from("192.0.2.1"))
    assert [t.closed for t in others] == [False, False, True]
    assert others[2].written.startswith(b"HTTP/1.1 429 ")


async def test_a_burst_within_the_grace_is_not_pending_but_idle_sockets_are():
    open_from = _opener(max_connections=100, max_pending_per_ip=2, pending_grace=0.05)
    burst = [open_from("192.0.2.7") for _ in range(10)]  # all at once: none is pending yet
    assert not any(t.closed for t in burst)
    await asyncio.sleep(0.1)  # now they have all gone the grace without a head
    late = open_from("192.0.2.7")
    assert late.closed and late.written.startswith(b"HTTP/1.1 429 ")


async def test_past_the_cap_the_oldest_pending_connection_makes_room():
    open_from = _opener(max_connections=3, max_pending_per_ip=10)
    first, second, third = open_from("192.0.2.1"), open_from("192.0.2.2"), open_from("192.0.2.3")
    fourth = open_from("192.0.2.4")
    assert (first.closed, second.closed, third.closed, fourth.closed) == (True, False, False, False)
    assert first.written == b""  # closed without an answer: it never asked anything


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def asked(transport: Transport, request: bytes = GET) -> Transport:
    """Send a whole request on ``transport`` and let the app answer it: the connection is then idle."""
    transport.protocol.data_received(request)
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 204 ") and not transport.closed
    transport.written = b""
    return transport


async def test_past_the_cap_the_connection_idle_longest_makes_room_when_none_is_pending():
    open_from = _opener(max_connections=3, max_pending_per_ip=10)
    first = await asked(open_from("192.0.2.1"))
    second = await asked(open_from("192.0.2.2"))
    third = await asked(open_from("192.0.2.3"))
    assert [t.closed for t in (first, second, third)] == [False, False, False]
    fourth = open_from("192.0.2.4")
    assert (first.closed, second.closed, third.closed, fourth.closed) == (True, False, False, False)
    assert first.written == b""  # closed between requests, as a keep-alive timeout would
    await asked(fourth)
    # Used again, a connection is idle anew: the third one has now been idle longest.
    await asked(second)
    open_from("192.0.2.5")
    assert (second.closed, third.closed) == (False, True)


async def test_room_is_made_from_a_pending_connection_before_an_idle_one():
    open_from = _opener(max_connections=3, max_pending_per_ip=10)
    idle = [await asked(open_from("192.0.2.1")), await asked(open_from("192.0.2.2"))]
    silent = open_from("192.0.2.3")  # newer than both, but it has sent no head
    await asked(open_from("192.0.2.4"))
    assert silent.closed and not any(t.closed for t in idle)
    # An idle connection that begins its next head is pending again, so it goes before the idle one.
    idle[1].protocol.data_received(b"GET / HT")
    open_from("192.0.2.5")
    assert idle[1].closed and not idle[0].closed


async def test_a_new_connection_is_spared_within_its_grace_and_pending_after_it():
    """Only past PENDING_GRACE is a head-less connection pending; until then an idle one goes first."""
    open_from = _opener(max_connections=2, max_pending_per_ip=10, pending_grace=0.3)
    idle = await asked(open_from("192.0.2.1"))
    new = open_from("192.0.2.2")  # no head yet, but only just accepted
    later = open_from("192.0.2.3")
    assert idle.closed and not new.closed
    await asked(later)
    await asyncio.sleep(0.35)  # `new` has gone its grace without a head: pending now
    open_from("192.0.2.4")
    assert new.closed and not later.closed


async def test_a_connection_whose_head_waits_unread_in_its_socket_is_passed_over_for_room():
    """Between accept and the first read, a whole head sits unread in the socket: not "still sending"."""
    open_from = _opener(max_connections=2, max_pending_per_ip=10)
    arrived = open_from("192.0.2.1")
    ours, theirs = socket.socketpair()
    try:
        arrived.sock = ours
        theirs.sendall(GET)  # the event loop has not read it yet
        idle = await asked(open_from("192.0.2.2"))
        open_from("192.0.2.3")
        assert idle.closed and not arrived.closed
        arrived.protocol.data_received(ours.recv(1024))
        await settle()
        assert arrived.written.startswith(b"HTTP/1.1 204 ")
    finally:
        ours.close()
        theirs.close()


async def test_a_connection_with_a_request_in_flight_is_never_closed_for_room():
    release = asyncio.Event()

    async def slow(scope, receive, send) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await _app(scope, receive, send)

    open_from = _opener(app=slow, max_connections=2, max_pending_per_ip=10)
    busy = [open_from("192.0.2.1"), open_from("192.0.2.2")]
    for transport in busy:
        transport.protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    refused = open_from("192.0.2.3")
    assert refused.closed and refused.written.startswith(b"HTTP/1.1 503 ")
    assert not any(t.closed for t in busy)
    release.set()
    await settle()
    assert all(t.written.startswith(b"HTTP/1.1 204 ") for t in busy)
    assert not open_from("192.0.2.4").closed  # now idle, they make room
    assert busy[0].closed and not busy[1].closed


async def test_one_ip_holds_at_most_max_idle_per_ip_idle_connections_without_a_credential():
    open_from = _opener(max_connections=100, max_pending_per_ip=100, max_idle_per_ip=2)
    anonymous = [await asked(open_from("192.0.2.9")) for _ in range(2)]
    assert not any(t.closed for t in anonymous)
    third = open_from("192.0.2.9")
    third.protocol.data_received(GET)
    await settle()
    # The third idle one is past the cap: the oldest of the three is closed, the others stay.
    assert [t.closed for t in (*anonymous, third)] == [True, False, False]
    # A credential on the last request, another address: neither counts against 192.0.2.9.
    keyed = [
        await asked(open_from("192.0.2.9"), b"GET / HTTP/1.1\r\nHost: x\r\nX-API-Key: sk-x\r\n\r\n"),
        await asked(open_from("192.0.2.9"), b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"),
        await asked(
            open_from("192.0.2.9"), b"GET / HTTP/1.1\r\nHost: x\r\nCookie: seadragon_session=s\r\n\r\n"
        ),
    ]
    other = [await asked(open_from("192.0.2.10")) for _ in range(2)]
    assert not any(t.closed for t in (*keyed, *other, anonymous[1], third))


async def test_trusted_proxies_are_exempt_from_the_per_ip_idle_cap():
    open_from = _opener(
        max_connections=100,
        max_pending_per_ip=100,
        max_idle_per_ip=1,
        trusted_proxies=(ip_network("10.0.0.0/8"),),
    )
    proxied = [await asked(open_from("10.0.0.1")) for _ in range(5)]
    assert not any(t.closed for t in proxied)


async def test_a_body_still_arriving_after_an_early_answer_is_cut_at_the_body_timeout():
    open_from = _opener(max_connections=10, max_pending_per_ip=10, body_timeout=0.5)
    dripping = open_from("192.0.2.1")
    dripping.protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    whole = open_from("192.0.2.2")
    await asked(whole, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
    assert dripping.written.startswith(b"HTTP/1.1 204 ") and not dripping.closed  # answered, not read
    dripping.protocol.data_received(b"c")
    await asyncio.sleep(0.25)
    assert not dripping.closed
    await asyncio.sleep(0.5)
    assert dripping.closed and b" 408 " not in dripping.written
    assert not whole.closed  # a body that came whole has no deadline left


async def test_a_connection_answered_before_its_body_was_all_in_is_idle_after_it_and_times_out():
    open_from = _opener(keepalive=0.3, max_connections=10, max_pending_per_ip=10, body_timeout=5)
    early = open_from("192.0.2.1")
    early.protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na")
    await settle()
    assert early.written.startswith(b"HTTP/1.1 204 ")
    early.protocol.data_received(b"b")
    early.protocol.data_received(b"c")  # the body is whole: the connection is idle now
    assert early.protocol in early.protocol.idle_by_age
    await asyncio.sleep(0.5)
    assert early.closed  # by KEEPALIVE_TIMEOUT, though each byte of the body cancelled uvicorn's timer


async def test_a_body_nobody_answers_gets_408_from_the_door_a_moment_after_the_body_timeout():
    async def never(scope, receive, send) -> None:
        if not scope.get(LONG_BODY) and scope["path"] == "/long":
            scope[LONG_BODY] = True  # what the gateway does for an admitted blob upload
        await asyncio.Event().wait()

    open_from = _opener(app=never, max_connections=10, max_pending_per_ip=10, body_timeout=0.05)
    stuck, long = open_from("192.0.2.1"), open_from("192.0.2.2")
    stuck.protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    long.protocol.data_received(b"POST /long HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    await asyncio.sleep(0.5)
    assert not stuck.closed  # the app had its chance to answer 408 itself first
    await asyncio.sleep(BODY_BACKSTOP_GRACE)
    assert stuck.closed and stuck.written.startswith(b"HTTP/1.1 408 ")
    assert not long.closed


def test_max_idle_per_ip_is_a_setting_with_a_default_of_64_and_strict_parsing():
    assert Settings.from_env({}).max_idle_per_ip == 64
    assert Settings.from_env({"SEADRAGON_MAX_IDLE_PER_IP": "3"}).max_idle_per_ip == 3
    for bad in ("0", "-1", "lots", "1.5"):
        with pytest.raises(ConfigError, match="SEADRAGON_MAX_IDLE_PER_IP"):
            Settings.from_env({"SEADRAGON_MAX_IDLE_PER_IP": bad})


def test_the_run_command_gives_the_door_every_limit_from_the_settings(monkeypatch):
    monkeypatch.setattr("common.door_parts.raise_descriptor_limit", lambda needed: (needed, needed, needed))
    env = {"SEADRAGON_MAX_IDLE_PER_IP": "7", "SEADRAGON_BODY_TIMEOUT": "9", "SEADRAGON_MAX_CONNECTIONS": "50"}
    limits = prepare_door(Settings.from_env(env)).limits
    assert (limits.max_idle_per_ip, limits.body_timeout, limits.max_connections) == (7, 9.0, 50)
