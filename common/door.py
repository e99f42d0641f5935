"""Limits at the door: what a connection may cost before and between its requests.

uvicorn 0.54 with httptools enforces none of these, so they live in a
subclass of its httptools protocol, passed to ``uvicorn.run(http=...)``
(README "Limits at the door", docs/contract.md §10 and §16):

- ``HEAD_TIMEOUT``: a connection that has not sent a complete request head
  within it is closed (408 if it had begun one). uvicorn has no header-read
  timeout, and its keep-alive timer is reset by every byte, so a client
  sending one byte every few seconds held a socket forever.
- ``MAX_HEAD_SIZE``: bytes are counted *before* they reach the parser; past
  the limit the answer is 431 and the rest is never read. httptools keeps
  no limit and concatenates header pieces, so a 100 MB header cost seconds
  of CPU and memory that stayed.
- ``MAX_CONNECTIONS``: past it, room is made from the idle (§16): the oldest
  *pending* connection (below) is closed, else the kept-alive connection idle
  longest between requests, else the oldest connection still within its grace;
  a connection with a request in flight is never closed for room. Only when
  every place is in flight is the new connection answered 503. uvicorn's ``limit_concurrency`` answers 503
  only once a whole head has arrived, so idle sockets took every descriptor;
  and before §16 sockets that asked ``GET /health`` once and stayed idle
  filled the cap for ``KEEPALIVE_TIMEOUT`` and kept key holders out.
- ``MAX_PENDING_PER_IP``: a connection is *pending* once it has gone
  ``PENDING_GRACE`` seconds without a complete request head; one IP may hold
  this many, the next is answered 429 and closed. The grace keeps a
  legitimate burst (a thousand streams opened at once: every head arrives
  within milliseconds) out of the count.
- ``MAX_IDLE_PER_IP``: one IP may hold this many idle kept-alive connections
  whose last request carried no credential (``X-API-Key``, ``Authorization``,
  the session cookie); past it the oldest is closed.
- ``BODY_TIMEOUT`` is a backstop here: the apps answer 408 themselves when
  they read a body (``common.whole_body``, ``proxy_app.bodies``); a body still
  arriving a moment later (an early answer, a route that never reads it) ends
  the connection, with 408 if nothing was answered yet. A request marked
  ``LONG_BODY`` in its scope (an admitted blob upload, gigabytes) is exempt.
- ``KEEPALIVE_TIMEOUT`` is uvicorn's own ``timeout_keep_alive``.

Connections from ``TRUSTED_PROXIES`` are exempt from the per-IP caps (the proxy
multiplexes many clients). Every list is an ``OrderedDict`` in age order, so
making room and the per-IP caps are O(1). The hot path (a request whose head
and body arrive in one read) pays a few attribute checks.
"""

from __future__ import annotations

import asyncio
import select
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.door_parts import (
    BODY_TIMEOUT_ANSWER,
    HEAD_TIMEOUT_ANSWER,
    HEAD_TOO_LARGE,
    TOO_MANY,
    TOO_MANY_PENDING,
    carries_credential,
)
from common.network import IPNetwork, in_any, parse_ip

# After refusing an oversized head, reads stop and the socket closes this
# much later, so the client can read the 431 before the reset.
LINGER_SECONDS = 1.0
# Past BODY_TIMEOUT an app reading the body answers 408 itself; the door waits this much longer
# before it answers for an app that did not, so the two never race.
BODY_BACKSTOP_GRACE = 1.0
# Candidates looked at, in each of the two lists, before one is closed to make room.
ROOM_CHECKS = 16
# Scope key an app sets on a request whose body may take longer than BODY_TIMEOUT.
LONG_BODY = "seadragon.long_body"

Bucket = OrderedDict["DoorProtocol", None]


@dataclass(frozen=True)
class DoorLimits:
    """The limits one server enforces (from :class:`common.settings.Settings`)."""

    head_timeout: float
    max_head_size: int
    max_connections: int
    max_pending_per_ip: int
    pending_grace: float = 1.0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_idle_per_ip: int = 64
    body_timeout: float | None = None


class DoorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see :func:`door_protocol`."""

    limits: ClassVar[DoorLimits]
    pending: ClassVar[dict[str, int]]  # client IP -> its pending connections (past the grace)
    # Connections without a complete head, oldest first. An OrderedDict: a plain dict emptied
    # from the front makes ``next(iter(...))`` walk every deleted slot (6 % of the CPU in a flood).
    pending_by_age: ClassVar[Bucket]
    idle_by_age: ClassVar[Bucket]  # kept-alive connections between requests, idle longest first
    idle_anonymous: ClassVar[dict[str, Bucket]]  # client IP -> its idle connections without a credential

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        self._head_open = True  # the next request's head is not complete yet
        self._head_begun = False  # some of that head has arrived
        self._head_left = self.limits.max_head_size
        self._head_timer: asyncio.TimerHandle | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._pending_ip: str | None = None  # set once counted against its IP
        self._pending_since = 0.0  # loop time it joined pending_by_age
        self._counted_ip: str | None = None  # its IP when the per-IP caps apply to it
        self._idle = False  # in idle_by_age
        self._idle_bucket: Bucket | None = None  # its IP's idle_anonymous entry, when in it
        self._body_open = False  # a request's body is still arriving
        self._body_due = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection, or refuse it when a cap is reached."""
        super().connection_made(transport)
        ip = self.client[0] if self.client else None
        if ip is not None and not self._exempt(ip):
            self._counted_ip = ip
            if self.pending.get(ip, 0) >= self.limits.max_pending_per_ip:
                self._refuse(TOO_MANY_PENDING)
                return
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._refuse(TOO_MANY)
            return
        self._join_pending()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _join_pending(self) -> None:
        self.pending_by_age[self] = None
        self._pending_since = self.loop.time()
        if self._counted_ip is not None:
            self._grace_timer = self.loop.call_later(
                self.limits.pending_grace, self._count_pending, self._counted_ip
            )

    def _count_pending(self, ip: str) -> None:
        # Still no complete head after the grace: it counts against its address.
        self._grace_timer = None
        if self.transport.is_closing():
            return
        self.pending[ip] = self.pending.get(ip, 0) + 1
        self._pending_ip = ip

    def _make_room(self) -> bool:
        """Close a pending connection, else the one idle longest, else the oldest new one (§16).

        False when every connection has a request in flight. *Pending* is the README's word: no
        complete head ``PENDING_GRACE`` after accept. A newer connection has mostly just not been
        read yet: under an idle flood a key holder's new connection sat between accept and its first
        read while the flood's connects closed the oldest head-less one, which was often it (9 of
        120 fresh requests failed in a measurement). Likewise a connection whose bytes wait unread
        in its socket is passed over (moved to the back): it is not "still sending", and a
        kept-alive client whose next request is on its way would see the close as a failure.
        """
        pending, idle = self.pending_by_age, self.idle_by_age
        settled = self.loop.time() - self.limits.pending_grace
        for _ in range(min(len(pending), ROOM_CHECKS)):
            oldest = next(iter(pending))
            if oldest._pending_since > settled:
                break  # this one and every later one are still new
            if not oldest._has_unread_bytes():
                oldest._close_for_room()
                return True
            pending.move_to_end(oldest)
        for _ in range(min(len(idle), ROOM_CHECKS)):
            oldest = next(iter(idle))
            if not oldest._has_unread_bytes():
                oldest._close_for_room()
                return True
            idle.move_to_end(oldest)
        # Nothing pending or idle to spare: the oldest new connection goes, or a burst would be refused.
        oldest = next(iter(pending), None) or next(iter(idle), None)
        if oldest is None:
            return False
        oldest._close_for_room()
        return True

    def _close_for_room(self) -> None:
        self._release_pending()
        self._stop_head_timer()
        self._leave_idle()
        self.transport.close()

    def _has_unread_bytes(self) -> bool:
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        # poll, not select: select() refuses descriptors past 1024, and a full door holds thousands.
        poller = select.poll()
        try:
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return False

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
        self._leave_idle()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting head bytes first."""
        if self._head_open:
            if len(data) > self._head_left:
                self._feed_limited(data)
                return
            self._head_left -= len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._head_begun and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
        if self._body_open and self._body_timer is None and self.limits.body_timeout is not None:
            # Armed only when a body outlives the read that brought its head: the hot path skips it.
            self._body_timer = self.loop.call_at(self._body_due, self._body_timed_out)

    def _feed_limited(self, data: bytes) -> None:
        allowed = self._head_left
        self._head_left = 0
        super().data_received(data[:allowed])
        if self.transport.is_closing():
            return
        if self._head_open:
            self._refuse(HEAD_TOO_LARGE, linger=True)
            return
        self.data_received(data[allowed:])

    def on_message_begin(self) -> None:
        """A request starts: its head is now being read (an idle connection is pending again)."""
        super().on_message_begin()
        self._head_begun = True
        if self._idle:
            self._leave_idle()
            self._join_pending()

    def on_headers_complete(self) -> None:
        """The head is whole: no head timer, no longer pending; its body's deadline starts."""
        self._head_open = False
        self._head_begun = False
        if self._head_timer is not None:
            self._stop_head_timer()
        self._release_pending()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:  # not a protocol upgrade
            self._body_open = True
            if self.limits.body_timeout is not None:
                self._body_due = self.loop.time() + self.limits.body_timeout

    def on_message_complete(self) -> None:
        """The body is read: the next bytes are the next request's head."""
        super().on_message_complete()
        self._head_open = True
        self._head_left = self.limits.max_head_size
        self._body_open = False
        if self._body_timer is not None:
            self._stop_body_timer()
        if self.cycle is not None and self.cycle.response_complete:
            self._between_requests()  # it was answered before its body was all in

    def on_response_complete(self) -> None:
        """A response went out: with nothing else asked, the connection is idle until its next head."""
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and self._head_open:
            self._between_requests()

    def _between_requests(self) -> None:
        if self.transport.is_closing() or self._idle or self in self.pending_by_age:
            return
        if self._head_begun:
            self._join_pending()  # the next head has begun: pending, not idle
            return
        self._idle = True
        self.idle_by_age[self] = None
        ip = self._counted_ip
        if ip is None or carries_credential(self.headers):
            return
        bucket = self.idle_anonymous.get(ip)
        if bucket is None:
            bucket = self.idle_anonymous[ip] = OrderedDict()
        bucket[self] = None
        self._idle_bucket = bucket
        if len(bucket) > self.limits.max_idle_per_ip:
            oldest = next(iter(bucket))
            oldest._leave_idle()
            oldest.transport.close()

    def _leave_idle(self) -> None:
        if not self._idle:
            return
        self._idle = False
        self.idle_by_age.pop(self, None)
        bucket, self._idle_bucket = self._idle_bucket, None
        if bucket is not None:
            bucket.pop(self, None)
            if not bucket and self._counted_ip is not None:
                self.idle_anonymous.pop(self._counted_ip, None)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self.transport.write(HEAD_TIMEOUT_ANSWER)
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or not self._body_open or cycle is None or cycle.scope.get(LONG_BODY):
            return
        if not cycle.response_started:
            if self.loop.time() < self._body_due + BODY_BACKSTOP_GRACE:
                # The app reading it answers 408 now; the door answers only for one that does not.
                self._body_timer = self.loop.call_at(
                    self._body_due + BODY_BACKSTOP_GRACE, self._body_timed_out
                )
                return
            self.transport.write(BODY_TIMEOUT_ANSWER)
        cycle.disconnected = True  # the app's further sends go nowhere; its receive sees the disconnect
        cycle.message_event.set()
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

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

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
    """A protocol class for one server: its limits and its own lists of connections."""
    state = {
        "limits": limits,
        "pending": {},
        "pending_by_age": OrderedDict(),
        "idle_by_age": OrderedDict(),
        "idle_anonymous": {},
    }
    return type("SeadragonDoorProtocol", (DoorProtocol,), state)
