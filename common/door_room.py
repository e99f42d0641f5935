"""Room at the door (docs/contract.md §16): which connections are pending, which idle, which go.

A mixin of ``common.door.DoorProtocol``. A connection is in at most one of two lists, each an
``OrderedDict`` in age order: ``pending_by_age`` (no complete head yet) and ``idle_by_age``
(kept alive between requests); an idle one whose last request carried no credential is also in
its IP's ``idle_anonymous`` bucket, capped at ``MAX_IDLE_PER_IP``. Past ``MAX_CONNECTIONS``
``_make_room`` closes one of them; a connection with a request in flight is in neither list.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from common.door_parts import carries_credential, has_unread_bytes

if TYPE_CHECKING:
    from common.door import DoorLimits

# Candidates looked at, in each of the two lists, before one is closed to make room.
ROOM_CHECKS = 16

Bucket = OrderedDict["RoomKeeping", None]


class RoomKeeping:
    """The lists of pending and idle connections, and making room from them."""

    limits: ClassVar[DoorLimits]
    pending: ClassVar[dict[str, int]]  # client IP -> its pending connections (past the grace)
    pending_by_age: ClassVar[Bucket]
    idle_by_age: ClassVar[Bucket]  # kept-alive connections between requests, idle longest first
    idle_anonymous: ClassVar[dict[str, Bucket]]  # client IP -> its idle connections without a credential
    # Set by the protocol (uvicorn's and common.door's):
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    headers: list[tuple[bytes, bytes]]
    _counted_ip: str | None
    _pending_ip: str | None
    _pending_since: float
    _grace_timer: asyncio.TimerHandle | None
    _idle: bool
    _idle_bucket: Bucket | None
    _head_begun: bool
    _stop_head_timer: Callable[[], None]

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
        160 fresh requests failed in a measurement). Likewise a connection whose bytes wait unread
        in its socket is passed over (moved to the back): it is not "still sending", and a
        kept-alive client whose next request is on its way would see the close as a failure.
        """
        pending, idle = self.pending_by_age, self.idle_by_age
        settled = self.loop.time() - self.limits.pending_grace
        for _ in range(min(len(pending), ROOM_CHECKS)):
            oldest = next(iter(pending))
            if oldest._pending_since > settled:
                break  # this one and every later one are still new
            if not has_unread_bytes(oldest.transport):
                oldest._close_for_room()
                return True
            pending.move_to_end(oldest)
        for _ in range(min(len(idle), ROOM_CHECKS)):
            oldest = next(iter(idle))
            if not has_unread_bytes(oldest.transport):
                oldest._close_for_room()
                return True
            idle.move_to_end(oldest)
        # Nothing pending or idle to spare: the oldest new connection goes (one whose head has come
        # if it can), or a burst would be refused.
        for candidate in itertools.islice(pending, ROOM_CHECKS):
            if not has_unread_bytes(candidate.transport):
                candidate._close_for_room()
                return True
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
