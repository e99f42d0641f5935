"""Who goes next: the in-process priority queue with aging, and the backend slots.

SPEC §5: effective priority = base - AGING_PER_MINUTE x minutes waited, lowest
first, ties in arrival order. One aging rate for everyone means two waiting
tickets never swap places, so each ticket is keyed once at enqueue by
``(base + rate x enqueue_minutes, arrival_seq)`` and never re-sorted.

There is one heap per model (so a model no backend can take right now does not
hold up other models behind it) with lazy deletion: a ticket that leaves the
queue early is marked gone and skipped when it reaches the top. A sorted list of
the waiting keys answers ``position()`` in O(log n).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedList

from common.settings import Settings
from proxy_app.backends import BackendPool, BackendState, model_key

SOURCES = ("direct_api", "custom_app", "web_chat")


class SchedulerError(Exception):
    """A request cannot be (or stay) queued; ``status`` and ``retry_after`` shape the answer."""

    status: int = 503

    def __init__(self, message: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.retry_after = retry_after


class QueueFull(SchedulerError):
    """MAX_QUEUE requests are already waiting (503 with Retry-After)."""


class QueueTimeout(SchedulerError):
    """The request waited longer than QUEUE_TIMEOUT (503)."""


class NoBackend(SchedulerError):
    """No healthy backend serves the model (503 with Retry-After)."""


class Revoked(SchedulerError):
    """The credential behind a queued request was revoked while it waited (401/403)."""

    status = 401


@dataclass
class Ticket:
    """A request asking for a slot."""

    request_id: str
    priority: int | float  # base priority: lower is served first
    source: str  # "direct_api" | "custom_app" | "web_chat"
    model: str | None = None
    principal: Any = None


@dataclass(eq=False)
class Grant:
    """A slot on ``backend`` held for ``ticket`` until released."""

    ticket: Ticket
    backend: BackendState
    waited: float  # seconds spent queued
    released: bool = field(default=False, init=False, repr=False)
    granted_at: float = field(default=0.0, init=False, repr=False)


class Scheduler(Protocol):
    """What the gateway needs from a scheduler, in-process or shared through Redis."""

    async def acquire(self, ticket: Ticket) -> Grant: ...
    def release(self, grant: Grant) -> None: ...
    def cancel(self, request_id: str, error: SchedulerError) -> bool: ...
    def position(self, request_id: str) -> int | None: ...
    def snapshot(self) -> dict: ...
    def waiting(self) -> list[Ticket]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


def empty_by_source() -> dict[str, int]:
    """A per-source counter with every known source present."""
    return dict.fromkeys(SOURCES, 0)


def retry_estimate(mean_hold: float, waiting: int, slots: int) -> int:
    """Retry-After for a full queue: seconds to drain it at the mean hold time, 1-60."""
    return min(max(math.ceil(mean_hold * waiting / max(slots, 1)), 1), 60)


def _group(model: str | None) -> str:
    """Which heap a ticket waits in: one per canonical model name, "" for no model."""
    return model_key(model) if model else ""


_WAITING, _GRANTED, _GONE = 0, 1, 2


class _Waiter:
    __slots__ = ("ticket", "key", "enqueued", "deadline", "future", "state", "grant")

    def __init__(self, ticket: Ticket, key: tuple[float, int], enqueued: float, future: asyncio.Future):
        self.ticket = ticket
        self.key = key
        self.enqueued = enqueued
        self.deadline = 0.0  # event-loop time when QUEUE_TIMEOUT runs out
        self.future = future
        self.state = _WAITING
        self.grant: Grant | None = None


class LocalScheduler:
    """The queue and slots of one gateway process."""

    def __init__(self, settings: Settings, pool: BackendPool, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.pool = pool
        self._clock = clock
        self._rate = settings.aging_per_minute
        # Minutes count from here: small numbers keep ties like 1 + 0.1 x 20 == 3 exact in floats.
        self._epoch = clock()
        self._seq = itertools.count()
        self._heaps: dict[str, list[tuple[float, int, _Waiter]]] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._order: SortedList = SortedList()
        # Waiters in arrival order: the oldest wait, and the timeouts (one timeout for all,
        # so deadlines come in arrival order and one timer on the oldest is enough).
        self._arrivals: deque[_Waiter] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._dead = 0  # gone entries still sitting in the heaps
        self._queued = Counter[str]()
        self._active = Counter[str]()
        self._mean_hold = 5.0  # seconds a slot is held, moving average, for Retry-After
        pool.on_change(self._dispatch)

    async def start(self) -> None:
        """Start the backend health checks (if nobody has yet)."""
        await self.pool.start()

    async def close(self) -> None:
        """Fail every waiting request and stop the health checks."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for waiter in list(self._waiters.values()):
            self._fail(waiter, SchedulerError("the gateway is shutting down", retry_after=5))
        await self.pool.close()

    async def acquire(self, ticket: Ticket) -> Grant:
        """Wait for a slot; raises QueueFull, NoBackend, QueueTimeout or the error given to cancel()."""
        if ticket.request_id in self._waiters:
            raise ValueError(f"request {ticket.request_id!r} is already queued")
        if not self.pool.candidates(ticket.model):
            raise NoBackend("no healthy backend serves this model", retry_after=self._backend_retry())
        now = self._clock()
        # After every dispatch no waiting ticket can use a free slot, so a ticket that
        # finds one free for its model overtakes nobody by taking it at once.
        backend = self.pool.pick(ticket.model)
        if backend is not None:
            return self._take(ticket, backend, waited=0.0, now=now)
        if len(self._waiters) >= self.settings.max_queue:
            raise QueueFull("the queue is full, try again later", retry_after=self._full_retry())
        waiter = self._enqueue(ticket, now)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def _enqueue(self, ticket: Ticket, now: float) -> _Waiter:
        key = (ticket.priority + self._rate * ((now - self._epoch) / 60.0), next(self._seq))
        loop = asyncio.get_running_loop()
        waiter = _Waiter(ticket, key, now, loop.create_future())
        waiter.deadline = loop.time() + self.settings.queue_timeout
        if self._expiry is None:
            self._expiry = loop.call_at(waiter.deadline, self._expire_due)
        heapq.heappush(self._heaps.setdefault(_group(ticket.model), []), (*key, waiter))
        self._waiters[ticket.request_id] = waiter
        self._order.add(key)
        self._arrivals.append(waiter)
        self._queued[ticket.source] += 1
        return waiter

    def _take(self, ticket: Ticket, backend: BackendState, *, waited: float, now: float) -> Grant:
        backend.in_use += 1
        self._active[ticket.source] += 1
        grant = Grant(ticket, backend, waited)
        grant.granted_at = now
        return grant

    def release(self, grant: Grant) -> None:
        """Free the slot (idempotent) and hand it to the next waiting ticket."""
        if grant.released:
            return
        grant.released = True
        grant.backend.in_use -= 1
        self._active[grant.ticket.source] -= 1
        self._mean_hold += 0.1 * (self._clock() - grant.granted_at - self._mean_hold)
        self._dispatch()

    def cancel(self, request_id: str, error: SchedulerError) -> bool:
        """Take a waiting ticket out of the queue; its acquire() raises ``error``."""
        waiter = self._waiters.get(request_id)
        if waiter is None or waiter.future.done():
            return False
        self._fail(waiter, error)
        return True

    def position(self, request_id: str) -> int | None:
        """1-based place in the dispatch order, None if not waiting."""
        waiter = self._waiters.get(request_id)
        return None if waiter is None else self._order.bisect_left(waiter.key) + 1

    def waiting(self) -> list[Ticket]:
        """The waiting tickets, oldest first."""
        return [waiter.ticket for waiter in self._waiters.values()]

    def snapshot(self) -> dict:
        """Queue and slot numbers for stats, metrics and /health."""
        while self._arrivals and self._arrivals[0].state != _WAITING:
            self._arrivals.popleft()
        oldest = self._clock() - self._arrivals[0].enqueued if self._arrivals else 0.0
        return {
            "queue_length": len(self._waiters),
            "queue_by_source": {**empty_by_source(), **+self._queued},
            "active_requests": sum(self._active.values()),
            "active_by_source": {**empty_by_source(), **+self._active},
            "backends": self.pool.snapshot(),
            "oldest_wait": max(oldest, 0.0),
        }

    def _dispatch(self) -> None:
        """Grant free slots to the best-ordered waiting tickets whose model can run now."""
        while self._waiters and any(b.healthy and b.free > 0 for b in self.pool.backends):
            heads = []
            for name, heap in list(self._heaps.items()):
                while heap and heap[0][2].state != _WAITING:
                    heapq.heappop(heap)
                    self._dead -= 1
                if heap:
                    heads.append(heap[0])
                else:
                    del self._heaps[name]
            heads.sort()  # by (score, seq); seq is unique, so waiters are never compared
            for _score, _seq, waiter in heads:
                backend = self.pool.pick(waiter.ticket.model)
                if backend is not None:
                    self._grant(waiter, backend)
                    break
            else:
                return

    def _grant(self, waiter: _Waiter, backend: BackendState) -> None:
        heapq.heappop(self._heaps[_group(waiter.ticket.model)])
        now = self._clock()
        self._remove(waiter, counted_dead=False)
        if waiter.future.done():
            return  # the task was cancelled a moment ago; _abandon finds it gone
        waiter.state = _GRANTED
        waiter.grant = self._take(waiter.ticket, backend, waited=now - waiter.enqueued, now=now)
        waiter.future.set_result(waiter.grant)

    def _remove(self, waiter: _Waiter, *, counted_dead: bool = True) -> None:
        """Take a waiting ticket out of every index; its heap entry is left to lazy deletion."""
        waiter.state = _GONE
        del self._waiters[waiter.ticket.request_id]
        self._order.remove(waiter.key)
        self._queued[waiter.ticket.source] -= 1
        if counted_dead:
            self._dead += 1
            if self._dead > 1024 and self._dead > len(self._waiters):
                self._compact()
        if len(self._arrivals) > 2 * len(self._waiters) + 1024:
            self._arrivals = deque(w for w in self._arrivals if w.state == _WAITING)

    def _compact(self) -> None:
        """Drop gone entries from the heaps once they outnumber the living ones."""
        for name, heap in list(self._heaps.items()):
            alive = [entry for entry in heap if entry[2].state == _WAITING]
            heapq.heapify(alive)
            if alive:
                self._heaps[name] = alive
            else:
                del self._heaps[name]
        self._dead = 0

    def _fail(self, waiter: _Waiter, error: SchedulerError) -> None:
        self._remove(waiter)
        if not waiter.future.done():
            waiter.future.set_exception(error)

    def _expire_due(self) -> None:
        """Fail every ticket past QUEUE_TIMEOUT, then wait for the next oldest one."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        timeout = self.settings.queue_timeout
        while self._arrivals:
            oldest = self._arrivals[0]
            if oldest.state != _WAITING:
                self._arrivals.popleft()
            elif oldest.deadline <= loop.time():
                self._fail(oldest, QueueTimeout(f"waited in the queue for more than {timeout:g} seconds"))
            else:
                self._expiry = loop.call_at(oldest.deadline, self._expire_due)
                return

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiting task was cancelled (client left): forget it, or give back a racing grant."""
        if waiter.state == _WAITING:
            self._remove(waiter)
        elif waiter.future.done() and not waiter.future.cancelled():
            waiter.future.exception()  # mark a racing cancel()/timeout error as seen
        if waiter.state == _GRANTED and waiter.grant is not None:
            self.release(waiter.grant)

    def _full_retry(self) -> int:
        slots = sum(b.slots for b in self.pool.backends)
        return retry_estimate(self._mean_hold, len(self._waiters), slots)

    def _backend_retry(self) -> int:
        return max(1, math.ceil(self.pool.interval))
