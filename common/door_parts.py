"""The door's small parts (``common.door``): its refusals, what counts as a credential, descriptors."""

from __future__ import annotations

import asyncio
import json
import resource
import select
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from common.sessions import SESSION_COOKIE_NAME

# Descriptors besides client sockets: upstream connections (one per active
# request at most), the database, logs, the simulator pipe.
SPARE_DESCRIPTORS = 256
_CREDENTIAL_HEADERS = (b"x-api-key", b"authorization")
_SESSION_COOKIE = SESSION_COOKIE_NAME.encode() + b"="


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON error that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


TOO_MANY = refusal(503, "too many open connections")
TOO_MANY_PENDING = refusal(429, "too many connections from this address without a request")
HEAD_TOO_LARGE = refusal(431, "request head too large")
HEAD_TIMEOUT_ANSWER = refusal(408, "request head not received in time")
BODY_TIMEOUT_ANSWER = refusal(408, "request body not received in time")


def carries_credential(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when a request head (lower-case names, as uvicorn keeps them) presents a credential.

    Presence is enough: the door decides before any app has checked it, and a made-up
    credential buys nothing but being made room from like any other idle connection.
    """
    for name, value in headers:
        if name in _CREDENTIAL_HEADERS or (name == b"cookie" and _SESSION_COOKIE in value):
            return True
    return False


def has_unread_bytes(transport: asyncio.BaseTransport) -> bool:
    """True when bytes (or a close) wait in the connection's socket that the event loop has not read."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    # poll, not select: select() refuses descriptors past 1024, and a full door holds thousands.
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def descriptors_needed(max_connections: int) -> int:
    """File descriptors a server with this connection cap may hold at once."""
    return 2 * max_connections + SPARE_DESCRIPTORS


def raise_descriptor_limit(
    needed: int,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (never past the hard limit).

    Returns (soft before, soft now, hard).
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return soft, target, hard
    return soft, soft, hard
