"""common.door's pure parts: refusals and the open-file limit (the rest: tests/proxy/test_door.py)."""

from __future__ import annotations

import asyncio
import resource
from ipaddress import ip_network

from uvicorn.config import Config
from uvicorn.server import ServerState

from common.door import DoorLimits, descriptors_needed, door_protocol, raise_descriptor_limit, refusal


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

    def get_extra_info(self, name: str, default=None):
        """The peer and local addresses."""
        return {"peername": (self.peer, 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data) -> None:
        """Keep what was written."""
        self.written += bytes(data)

    def is_closing(self) -> bool:
        """Whether it was closed."""
        return self.closed

    def close(self) -> None:
        """Close it."""
        self.closed = True


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _opener(**limits):
    config = Config(_app, lifespan="off", log_level="warning")
    config.load()
    limits.setdefault("pending_grace", 0.0)
    protocol = door_protocol(DoorLimits(head_timeout=10, max_head_size=4096, **limits))
    state = ServerState()

    def open_from(peer: str) -> Transport:
        transport = Transport(peer)
        protocol(config=config, server_state=state, app_state={}).connection_made(transport)
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
