"""Limits at the door: what a connection may cost before and between its requests.

uvicorn 0.54 with httptools enforces none of these, so they live in a subclass of
its httptools protocol, passed to ``uvicorn.run(http=...)``. README "Limits at the
door" says what each does and why (docs/contract.md §10 and §16):

- ``HEAD_TIMEOUT``: no complete head within it, the connection closes (408 if begun).
  uvicorn's keep-alive timer is reset by every byte: a trickle held a socket forever.
- ``MAX_HEAD_SIZE``: bytes are counted *before* the parser sees them; past it 431.
- ``MAX_CONNECTIONS``: past it, room is made from the idle (§16): the oldest
  *pending* connection, else the kept-alive one idle longest, else the oldest
  still within its grace; one with a request in flight never. All in flight: 503.
- ``MAX_PENDING_PER_IP``: *pending* is no complete head ``PENDING_GRACE`` after
  accept (a burst of real requests never is); past it 429.
- ``MAX_IDLE_PER_IP``: idle kept-alive connections of one IP whose last request
  carried no credential; past it the oldest closes.
- ``BODY_TIMEOUT`` is a backstop here: the apps answer 408 themselves when they read
  a body (``common.whole_body``, ``proxy_app.bodies``); a body still arriving after
  an early answer, or one nobody reads, ends the connection. A request marked
  ``LONG_BODY`` (an admitted blob upload, gigabytes) is exempt.
- ``KEEPALIVE_TIMEOUT`` is uvicorn's own ``timeout_keep_alive``.

``TRUSTED_PROXIES`` are exempt from the per-IP caps (a proxy carries many clients).
Every list is an ``OrderedDict`` in age order (a plain dict emptied from the front
walks its deleted slots: 6 % of the CPU in a flood), so making room and the per-IP
caps are O(1). The hot path (a request whose head and body come in one read) pays a
few attribute checks.
"""

from __future__ import annotations

import asyncio
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
)
from common.door_room import Bucket, RoomKeeping
from common.network import IPNetwork, in_any, parse_ip

# After refusing an oversized head, reads stop and the socket closes this
# much later, so the client can read the 431 before the reset.
LINGER_SECONDS = 1.0
# Past BODY_TIMEOUT an app reading the body answers 408 itself; the door waits this much longer
# before it answers for an app that did not, so the two never race.
BODY_BACKSTOP_GRACE = 1.0
# Scope key an app sets on a request whose body may take longer than BODY_TIMEOUT.
LONG_BODY = "seadragon.long_body"


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


class DoorProtocol(RoomKeeping, HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see :func:`door_protocol`."""

    limits: ClassVar[DoorLimits]

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
        # Timers and lists only for a head or body that outlives the read that began it: a request
        # that comes whole in one read (the hot path) touches none of them.
        if self._head_begun and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
            if self not in self.pending_by_age:
                self._join_pending()  # a kept-alive connection's next head, still coming
        if self._body_open and self._body_timer is None and self.limits.body_timeout is not None:
            self._body_due = self.loop.time() + self.limits.body_timeout
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
            self._leave_idle()  # pending again if the head outlives this read (data_received)

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

    def on_message_complete(self) -> None:
        """The body is read: the next bytes are the next request's head."""
        super().on_message_complete()
        self._head_open = True
        self._head_left = self.limits.max_head_size
        self._body_open = False
        if self._body_timer is not None:
            self._stop_body_timer()
        if self.cycle is not None and self.cycle.response_complete and not self.transport.is_closing():
            # Answered before its body was all in: uvicorn armed the keep-alive timer with the answer,
            # and every byte of the body since cancelled it.
            self._between_requests()
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_response_complete(self) -> None:
        """A response went out: with nothing else asked, the connection is idle until its next head."""
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and self._head_open:
            self._between_requests()

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
