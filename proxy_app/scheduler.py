"""Who goes next: the in-process priority queue with aging, fair share, limits and affinity.

Longer than 300 lines because the rules share one dispatch loop and its indexes: split,
every rule would reach into the others' state.

docs/contract.md §5, §7, §8. Effective priority = base + fair-share points - AGING_PER_MINUTE
x minutes waited, lowest first, ties in arrival order. One aging rate for everyone means
two waiting tickets never swap places, so each ticket is keyed once at enqueue by
``(base + points + rate x enqueue_minutes, arrival_seq)`` and never re-sorted; the
fair-share points (``FAIR_SHARE`` per request of the same identity waiting or holding a
slot on arrival) are fixed then too. :class:`proxy_app.wait_queue.WaitQueue` indexes the
waiting tickets per model and identity, so an identity at its ``max_concurrent`` is
skipped without others losing their order.

Rules at enqueue: a free slot for the model is taken at once (after every dispatch no
eligible waiting ticket can use one); else ``max_queued`` (429), then ``MAX_QUEUE``: a
newcomer that ranks ahead of the worst waiting ticket evicts it, otherwise 503.

Model affinity at dispatch: the next ticket ``N`` goes to a free backend, preferring one
with its model loaded. If that backend has not loaded ``N``'s model, the best eligible
ticket of a model it has loaded goes instead when its effective priority is within
``MODEL_AFFINITY`` of ``N``'s, unless ``N`` was first passed over ``AFFINITY_MAX_DELAY``
seconds ago or more ("passed over" = being the next ticket while another goes first).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable

from common.settings import Settings
from proxy_app.backends import BackendPool, BackendState
from proxy_app.tickets import (
    ADMIN_CANCEL,
    SOURCES,
    AdminCancelled,
    Evicted,
    Grant,
    IdentityQueueFull,
    LimitSubject,
    NoBackend,
    QueueFull,
    QueueTimeout,
    Revoked,
    Scheduler,
    SchedulerError,
    ServiceTimes,
    Ticket,
    empty_by_source,
    group_of,
    queue_row,
    retry_estimate,
)
from proxy_app.wait_queue import WaitQueue

__all__ = [
    "ADMIN_CANCEL",
    "SOURCES",
    "AdminCancelled",
    "Evicted",
    "Grant",
    "IdentityQueueFull",
    "LimitSubject",
    "LocalScheduler",
    "NoBackend",
    "QueueFull",
    "QueueTimeout",
    "Revoked",
    "Scheduler",
    "SchedulerError",
    "Ticket",
    "empty_by_source",
    "group_of",
    "queue_row",
    "retry_estimate",
]


class _Waiter:
    __slots__ = (
        "ticket",
        "key",
        "group",
        "who",
        "subjects",
        "points",
        "enqueued",
        "deadline",
        "future",
        "passed_at",
    )

    def __init__(self, ticket: Ticket, key: tuple[float, int], points: float, enqueued: float, future):
        self.ticket = ticket
        self.key = key
        self.group = group_of(ticket.model)
        self.who = ticket.who
        self.subjects = tuple(subject.who for subject in ticket.subjects)
        self.points = points
        self.enqueued = enqueued
        self.deadline = 0.0  # event-loop time when QUEUE_TIMEOUT runs out
        self.future: asyncio.Future[Grant] = future
        self.passed_at: float | None = None  # first time model affinity passed it over


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
        self._queue = WaitQueue()
        self._waiters: dict[str, _Waiter] = {}
        self._grants: dict[str, Grant] = {}
        # Waiters in arrival order, for the oldest wait and the timeouts (one timeout for all,
        # so deadlines come in arrival order and one timer on the oldest is enough).
        self._arrivals: deque[_Waiter] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._queued = Counter[str]()
        self._active = Counter[str]()
        self._mean_hold = 5.0  # seconds a slot is held, moving average, for Retry-After
        self.service = ServiceTimes()
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
        """Wait for a slot; raises a SchedulerError (QueueFull, Evicted, IdentityQueueFull, ...)."""
        rid = ticket.request_id
        if rid in self._waiters or rid in self._grants:
            raise ValueError(f"request {rid!r} is already queued")
        if not self.pool.candidates(ticket.model):
            raise NoBackend("no healthy backend serves this model", retry_after=self._backend_retry())
        now = self._clock()
        who, subjects = ticket.who, ticket.subjects
        if self._queue.set_limits((subject.who, subject.max_concurrent) for subject in subjects):
            self._dispatch()  # a raised limit lets the subject's waiting tickets go first
        points = (
            self.settings.fair_share * (self._queue.waiting[who] + self._queue.active[who]) if who else 0.0
        )
        blocked = self._queue.blocked_by(subject.who for subject in subjects)
        backend = None if blocked else self.pool.pick(ticket.model)
        if backend is not None:
            return self._take(ticket, backend, waited=0.0, points=points, now=now)
        for subject in subjects:
            waiting = self._queue.subject_waiting[subject.who]
            if subject.max_queued is not None and waiting >= subject.max_queued:
                raise IdentityQueueFull(
                    f"this identity already has {waiting} requests waiting", retry_after=self._full_retry()
                )
        key = (ticket.priority + points + self._rate * ((now - self._epoch) / 60.0), next(self._seq))
        if len(self._queue) >= self.settings.max_queue:
            worst = self._queue.worst()
            if worst is None or key[0] >= worst.key[0]:
                raise QueueFull("the queue is full, try again later", retry_after=self._full_retry())
            retry = self._full_retry()
            self._fail(
                worst, Evicted("the queue is full and a request ranked ahead of this one", retry_after=retry)
            )
        waiter = self._enqueue(ticket, key, points, now)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def _enqueue(self, ticket: Ticket, key: tuple[float, int], points: float, now: float) -> _Waiter:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(ticket, key, points, now, loop.create_future())
        waiter.deadline = loop.time() + self.settings.queue_timeout
        if self._expiry is None:
            self._expiry = loop.call_at(waiter.deadline, self._expire_due)
        self._queue.add(waiter)
        self._waiters[ticket.request_id] = waiter
        self._arrivals.append(waiter)
        self._queued[ticket.source] += 1
        return waiter

    def _take(
        self, ticket: Ticket, backend: BackendState, *, waited: float, points: float, now: float
    ) -> Grant:
        backend.in_use += 1
        backend.given(group_of(ticket.model))
        self._active[ticket.source] += 1
        self._queue.holding(ticket.who, _names(ticket), +1)
        effective = ticket.priority + points - self._rate * waited / 60.0
        grant = Grant(ticket, backend, waited, points=points, effective=effective)
        grant.granted_at = now
        self._grants[ticket.request_id] = grant
        return grant

    def release(self, grant: Grant) -> None:
        """Free the slot (idempotent) and hand it to the next waiting ticket."""
        if grant.released:
            return
        grant.released = True
        self._grants.pop(grant.ticket.request_id, None)
        grant.backend.in_use -= 1
        self._active[grant.ticket.source] -= 1
        self._queue.holding(grant.ticket.who, _names(grant.ticket), -1)
        held = self._clock() - grant.granted_at
        self._mean_hold += 0.1 * (held - self._mean_hold)
        self.service.record(group_of(grant.ticket.model), grant.backend.url, held)
        self._dispatch()

    def cancel(self, request_id: str, error: SchedulerError) -> bool:
        """Take a waiting ticket out of the queue; its acquire() raises ``error``."""
        waiter = self._waiters.get(request_id)
        if waiter is None or waiter.future.done():
            return False
        self._fail(waiter, error)
        return True

    async def cancel_request(self, request_id: str, reason: str = ADMIN_CANCEL) -> bool:
        """An administrator's cancel: a waiting request fails with 503 ``reason``, an active one
        hears it through ``Grant.on_cancel``; False if the id is neither waiting nor active."""
        if self.cancel(request_id, AdminCancelled(reason)):
            return True
        grant = self._grants.get(request_id)
        return grant is not None and (grant.cancel(reason) or grant.cancel_reason is not None)

    def position(self, request_id: str) -> int | None:
        """1-based place in the order of every waiting ticket, None if not waiting."""
        waiter = self._waiters.get(request_id)
        return None if waiter is None else self._queue.rank(waiter) + 1

    def eta(self, request_id: str) -> int | None:
        """Whole seconds until this waiting request likely gets a slot; None if unknown."""
        waiter = self._waiters.get(request_id)
        if waiter is None:
            return None
        backends = self.pool.candidates(waiter.ticket.model)
        return self.service.eta(waiter.group, backends, self._queue.rank(waiter) + 1)

    async def queue_view(self) -> list[dict]:
        """Waiting requests in dispatch order, then active ones (docs/contract.md §8)."""
        now = self._clock()
        rows = []
        for rank, waiter in enumerate(self._queue.in_order()):
            waited = now - waiter.enqueued
            effective = waiter.ticket.priority + waiter.points - self._rate * waited / 60.0
            backends = self.pool.candidates(waiter.ticket.model)
            eta = self.service.eta(waiter.group, backends, rank + 1)
            rows.append(queue_row(waiter.ticket, "waiting", effective, waited, rank + 1, eta, None))
        for grant in self._grants.values():
            rows.append(
                queue_row(
                    grant.ticket, "active", grant.effective, grant.waited, None, None, grant.backend.url
                )
            )
        return rows

    def waiting(self) -> list[Ticket]:
        """The waiting tickets, oldest first."""
        return [waiter.ticket for waiter in self._waiters.values()]

    def snapshot(self) -> dict:
        """Queue and slot numbers for stats, metrics and /health."""
        while self._arrivals and self._arrivals[0].ticket.request_id not in self._waiters:
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
        """Grant free slots to the best eligible tickets whose model can run now (with affinity)."""
        while self._waiters and any(b.healthy and b.free > 0 for b in self.pool.backends):
            for nxt in self._queue.heads():
                backend = self.pool.pick(nxt.ticket.model)
                if backend is not None:
                    break
            else:
                return
            self._grant(self._affine(nxt, backend), backend)

    def _affine(self, nxt: _Waiter, backend: BackendState) -> _Waiter:
        """The ticket that takes ``backend``: ``nxt``, or one for a loaded model within MODEL_AFFINITY."""
        slack, max_delay = self.settings.model_affinity, self.settings.affinity_max_delay
        if slack <= 0 or max_delay <= 0 or nxt.ticket.model is None or backend.has_loaded(nxt.ticket.model):
            return nxt
        now = self._clock()
        if nxt.passed_at is not None and now - nxt.passed_at >= max_delay:
            return nxt
        best = None
        for group in self._queue.groups():
            head = self._queue.head_of(group)
            if (
                head is not None
                and head.key[0] <= nxt.key[0] + slack
                and (best is None or head.key < best.key)
                and backend.has_loaded(head.ticket.model)
                and backend in self.pool.candidates(head.ticket.model)
            ):
                best = head
        if best is None:
            return nxt
        if nxt.passed_at is None:
            nxt.passed_at = now
        return best

    def _grant(self, waiter: _Waiter, backend: BackendState) -> None:
        now = self._clock()
        self._remove(waiter)
        if waiter.future.done():
            return  # the task was cancelled a moment ago; _abandon finds it gone
        grant = self._take(
            waiter.ticket, backend, waited=now - waiter.enqueued, points=waiter.points, now=now
        )
        waiter.future.set_result(grant)

    def _remove(self, waiter: _Waiter) -> None:
        """Take a waiting ticket out of every index."""
        del self._waiters[waiter.ticket.request_id]
        self._queue.remove(waiter)
        self._queued[waiter.ticket.source] -= 1
        if len(self._arrivals) > 2 * len(self._waiters) + 1024:
            self._arrivals = deque(w for w in self._arrivals if w.ticket.request_id in self._waiters)

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
            if self._waiters.get(oldest.ticket.request_id) is not oldest:
                self._arrivals.popleft()
            elif oldest.deadline <= loop.time():
                self._fail(oldest, QueueTimeout(f"waited in the queue for more than {timeout:g} seconds"))
            else:
                self._expiry = loop.call_at(oldest.deadline, self._expire_due)
                return

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiting task was cancelled (client left): forget it, or give back a racing grant."""
        if self._waiters.get(waiter.ticket.request_id) is waiter:
            self._remove(waiter)
            return
        if waiter.future.done() and not waiter.future.cancelled():
            if waiter.future.exception() is None:  # also marks a racing error as seen
                self.release(waiter.future.result())

    def _full_retry(self) -> int:
        slots = sum(b.slots for b in self.pool.backends)
        return retry_estimate(self._mean_hold, len(self._waiters), slots)

    def _backend_retry(self) -> int:
        return max(1, math.ceil(self.pool.interval))


def _names(ticket: Ticket) -> tuple[str, ...]:
    return tuple(subject.who for subject in ticket.subjects)
