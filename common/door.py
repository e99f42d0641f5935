"""Limits at the door: what a connection may cost before it has sent a request.

uvicorn 0.54 with httptools enforces none of these, so they live in a
subclass of its httptools protocol, passed to ``uvicorn.run(http=...)``:

- ``HEAD_TIMEOUT``: a connection that has not sent a complete request head
  within it is closed (408 if it had begun one). uvicorn has no header-read
  timeout, and its keep-alive timer is reset by every byte, so a client
  sending one byte every few seconds held a socket forever.
- ``MAX_HEAD_SIZE``: bytes are counted *before* they reach the parser; past
  the limit the answer is 431 and the rest is never read. httptools keeps
  no limit and concatenates header pieces, so a 100 MB header cost seconds
  of CPU and memory that stayed.
- ``MAX_CONNECTIONS``: past it, the oldest *pending* connection (see below)
  is closed to make room, so a flood of half-open sockets cannot keep a
  client with a real request out; when none is pending, the new connection
  is answered 503 and closed at once. uvicorn's ``limit_concurrency`` only
  answers 503 once a whole head has arrived, so idle sockets still took
  every file descriptor.
- ``MAX_PENDING_PER_IP``: a connection is *pending* once it has gone
  ``PENDING_GRACE`` seconds after accept without a complete request head;
  one IP may hold this many pending connections, the next is answered 429
  and closed. The grace keeps a legitimate burst (one client opening a
  thousand streams at once: every head arrives within milliseconds) out of
  the count, while sockets held idle or trickled count after a second.
  Connections from ``TRUSTED_PROXIES`` are exempt (the proxy multiplexes
  many clients).
- ``KEEPALIVE_TIMEOUT`` is uvicorn's own ``timeout_keep_alive``.

The hot path (a head that arrives in one read) pays a few attribute checks.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from common.network import IPNetwork, in_any, parse_ip

# After refusing an oversized head, reads stop and the socket closes this
# much later, so the client can read the 431 before the reset.
LINGER_SECONDS = 1.0
# Descriptors besides client sockets: upstream connections (one per active
# request at most), the database, logs, the simulator pipe.
SPARE_DESCRIPTORS = 256


@dataclass(frozen=True)
class DoorLimits:
    """The limits one server enforces (from :class:`common.settings.Settings`)."""

    head_timeout: float
    max_head_size: int
    max_connections: int
    max_pending_per_ip: int
    pending_grace: float = 1.0
    trusted_proxies: tuple[IPNetwork, ...] = ()


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON error that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


_TOO_MANY = refusal(503, "too many open connections")
_TOO_MANY_PENDING = refusal(429, "too many connections from this address without a request")
_HEAD_TOO_LARGE = refusal(431, "request head too large")
_HEAD_TIMEOUT = refusal(408, "request head not received in time")


class DoorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see :func:`door_protocol`."""

    limits: ClassVar[DoorLimits]
    pending: ClassVar[dict[str, int]]  # client IP -> its pending connections (past the grace)
    # Connections without a head yet, oldest first. An OrderedDict: a plain dict that is
    # emptied from the front makes ``next(iter(...))`` walk every deleted slot, which under a
    # flood of evictions was 6 % of the gateway's CPU.
    pending_by_age: ClassVar[OrderedDict[DoorProtocol, None]]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        self._head_open = True  # the next request's head is not complete yet
        self._head_begun = False  # some of that head has arrived
        self._head_left = self.limits.max_head_size
        self._head_timer: asyncio.TimerHandle | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._pending_ip: str | None = None  # set once counted against its IP

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection, or refuse it when a cap is reached."""
        super().connection_made(transport)
        limits = self.limits
        ip = self.client[0] if self.client else None
        counted = ip is not None and not self._exempt(ip)
        if counted and self.pending.get(ip, 0) >= limits.max_pending_per_ip:
            self._refuse(_TOO_MANY_PENDING)
            return
        if len(self.connections) > limits.max_connections and not self._evict_oldest_pending():
            self._refuse(_TOO_MANY)
            return
        self.pending_by_age[self] = None
        if counted:
            self._grace_timer = self.loop.call_later(limits.pending_grace, self._count_pending, ip)
        self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)

    def _count_pending(self, ip: str) -> None:
        # Still no complete head after the grace: it counts against its address.
        self._grace_timer = None
        if self.transport.is_closing():
            return
        self.pending[ip] = self.pending.get(ip, 0) + 1
        self._pending_ip = ip

    def _evict_oldest_pending(self) -> bool:
        oldest = next(iter(self.pending_by_age), None)
        if oldest is None:
            return False
        oldest._release_pending()
        oldest._stop_head_timer()
        oldest.transport.close()
        return True

    def _exempt(self, ip: str) -> bool:
        trusted = self.limits.trusted_proxies
        if not trusted:
            return False
        address = parse_ip(ip, allow_zone=True)
        return address is not None and in_any(address, trusted)

    def connection_lost(self, exc: Exception | None) -> None:
        """Release what the connection held."""
        self._stop_head_timer()
        self._release_pending()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting head bytes first."""
        if self._head_open:
            if len(data) > self._head_left:
                self._feed_limited(data)
                return
            self._head_left -= len(data)
        super().data_received(data)
        if self._head_begun and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _feed_limited(self, data: bytes) -> None:
        allowed = self._head_left
        self._head_left = 0
        super().data_received(data[:allowed])
        if self.transport.is_closing():
            return
        if self._head_open:
            self._refuse(_HEAD_TOO_LARGE, linger=True)
            return
        self.data_received(data[allowed:])

    def on_message_begin(self) -> None:
        """A request starts: its head is now being read."""
        super().on_message_begin()
        self._head_begun = True

    def on_headers_complete(self) -> None:
        """The head is whole: no head timer, no longer pending."""
        self._head_open = False
        self._head_begun = False
        if self._head_timer is not None:
            self._stop_head_timer()
        self._release_pending()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is read: the next bytes are the next request's head."""
        super().on_message_complete()
        self._head_open = True
        self._head_left = self.limits.max_head_size

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self.transport.write(_HEAD_TIMEOUT)
        self.transport.close()

    def _refuse(self, response: bytes, *, linger: bool = False) -> None:
        self._stop_head_timer()
        self.transport.write(response)
        if not linger:
            self.transport.close()
            return
        # Closing with unread bytes resets the connection, which can destroy
        # the response before the client reads it: stop reading, end our
        # side, and close a moment later.
        self.transport.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _release_pending(self) -> None:
        self.pending_by_age.pop(self, None)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        ip = self._pending_ip
        if ip is None:
            return
        self._pending_ip = None
        count = self.pending.get(ip, 0) - 1
        if count > 0:
            self.pending[ip] = count
        else:
            self.pending.pop(ip, None)


def door_protocol(limits: DoorLimits) -> type[DoorProtocol]:
    """A protocol class for one server: its limits and its own pending counts."""
    state = {"limits": limits, "pending": {}, "pending_by_age": OrderedDict()}
    return type("SeadragonDoorProtocol", (DoorProtocol,), state)


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
