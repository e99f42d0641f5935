"""The scheduler shared through Redis: several gateway instances, one queue, one set of slots.

Same interface and rules as :class:`proxy_app.scheduler.LocalScheduler` (docs/contract.md §5,
§7, §8, §12: aging, fair share, eviction, max_queued / max_concurrent, model affinity,
max_parallel, sticky conversations); every
step that touches shared state is one atomic Lua script (``scheduler_redis.lua``), and
``scheduler_redis_wire`` turns its replies into Python. Longer than 300 lines because the
acquire / grant / give-back races it settles belong together.

Keys, under ``<prefix>:`` (default ``seadragon``):

- ``queue`` sorted set of every waiting ticket, score ``base + fair-share points + rate x
  enqueue_minutes``, member ``<16-digit INCR seq><request id>`` (equal scores go in arrival
  order); ``lane:<model>\n<who>`` the same per model and identity; ``ready:<model>`` the
  heads of the lanes whose identity is below its max_concurrent; ``models`` the models
  with a ready head; ``arrivals`` request id by enqueue time;
- ``waiting`` / ``active`` hashes per identity (fair share); ``wm:<who>`` its waiting per model;
  ``swaiting`` / ``sactive`` / ``limit`` hashes per limit subject (``max_queued`` /
  ``max_concurrent``, docs/contract.md §16), ``subj:<who>`` a waiting identity's subjects and
  ``members:<subject>`` the identities waiting under one; ``gpu:<who>`` / ``running:<who>`` its
  slot intervals for fair share by time (§13);
- ``t:<request id>`` hash: member, model, who, subj, source, owner, deadline, state, backend,
  base, points, enq, waited, gat (when it took its slot), passed (first passed over by
  affinity), endpoint;
- ``leases:<backend url>`` sorted set: request ids holding a slot there, scored by
  lease expiry; ``recent:<url>`` sorted set: the models it was given, scored by the shared
  counter ``recent_seq`` (model affinity, proxy_app/backends.py); ``svc`` mean service seconds
  per ``model\nurl``; ``counts`` hash of ``queued:<source>`` / ``active:<source>``;
- ``mcap`` / ``mactive`` hashes per model group: its max_parallel and slots held (§12);
  ``home:<conversation>`` the backend that served the conversation's last turn (a day's TTL);
- ``inst:<instance>`` heartbeat; ``granted:<instance>`` the instance's inbox: ``g`` grant,
  ``e`` evicted, ``c`` cancelled by an administrator (issued on any instance).

**Leases.** A granted slot is a lease that expires ``lease`` seconds (default 15)
after it was last refreshed. Each instance refreshes the leases it holds, and its
heartbeat, every ``tick`` seconds (default 0.25). If an instance crashes, its slots
come back at most ``lease`` seconds later and its waiting tickets are skipped (no
heartbeat) or dropped after QUEUE_TIMEOUT. An instance stalled for longer than
``lease`` loses its slots to others: keep ``lease`` well above any pause.

**Wake-up.** Each instance waits on its inbox with ``BLPOP``, so a grant arrives at once. A
grant for a request this instance no longer waits for gives the slot straight back. The
redis client must not have a ``socket_timeout`` shorter than 2 s.

``release``, ``cancel``, ``position``, ``eta``, ``snapshot`` and ``waiting`` are synchronous
(the interface is), so they act locally at once and reach Redis from a background task;
``position``, ``eta`` and ``snapshot`` are as fresh as the last tick. Every instance must
be configured with the same ``OLLAMA_URLS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.settings import Settings
from proxy_app.backends import BackendPool, BackendState
from proxy_app.scheduler import (
    ADMIN_CANCEL,
    AdminCancelled,
    Evicted,
    Grant,
    IdentityQueueFull,
    NoBackend,
    QueueFull,
    QueueTimeout,
    SchedulerError,
    Ticket,
    group_of,
    retry_estimate,
)
from proxy_app.scheduler_redis_wire import (
    ScriptConfig,
    empty_snapshot,
    load_service_times,
    text,
    tick_snapshot,
    view_rows,
)
from proxy_app.tickets import ServiceTimes

log = logging.getLogger(__name__)
SCRIPT = (Path(__file__).with_name("scheduler_redis.lua")).read_text()


class _Waiter:
    __slots__ = ("ticket", "future", "started", "member", "position", "wants_position", "grant", "points")

    def __init__(self, ticket: Ticket, future: asyncio.Future, started: float) -> None:
        self.ticket = ticket
        self.future = future
        self.started = started
        self.member: str | None = None  # its member in the shared queue, once queued
        self.position: int | None = None
        self.wants_position = False
        self.grant: Grant | None = None
        self.points = 0.0  # fair-share points Redis gave it


class RedisScheduler:
    """One instance's view of the queue and slots shared by every instance through Redis."""

    def __init__(
        self,
        settings: Settings,
        pool: BackendPool,
        redis_client: Redis,
        *,
        prefix: str = "seadragon",
        lease: float = 15.0,
        tick: float = 0.25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._config = ScriptConfig(pool, settings)  # encoded once per change, not per call
        self.pool = pool
        self.redis = redis_client
        self.prefix = prefix
        self.instance = uuid.uuid4().hex
        self.lease_ms = int(lease * 1000)
        self.tick = tick
        # Aging uses Redis TIME unless a clock (seconds) is given, as tests do.
        self._aging_clock = clock
        self._script = redis_client.register_script(SCRIPT)
        self._waiters: dict[str, _Waiter] = {}
        self._held: dict[str, Grant] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []
        self._closing = False
        self._mean_hold = 5.0
        self._snapshot: dict = empty_snapshot()
        self.service = ServiceTimes()  # shared service times, as of the last tick
        pool.on_change(self._poke)

    async def start(self) -> None:
        """Start health checks, announce this instance, then tick and listen for grants."""
        await self.pool.start()
        await self._tick_once()
        self._loops = [
            asyncio.create_task(self._tick_loop(), name="seadragon-redis-tick"),
            asyncio.create_task(self._inbox_loop(), name="seadragon-redis-inbox"),
        ]

    async def close(self) -> None:
        """Fail local waiters, give back local slots, stop the loops and the health checks."""
        # redis-py can swallow a cancellation that lands mid-command, so the loops also
        # stop on this flag (within a tick or a BLPOP timeout).
        self._closing = True
        for task in self._loops:
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=3)
        self._loops = []
        for rid in list(self._waiters):
            self.cancel(rid, SchedulerError("the gateway is shutting down", retry_after=5))
        for grant in list(self._held.values()):
            self.release(grant)
        await self.flush()
        await self.pool.close()

    async def flush(self) -> None:
        """Wait until every Redis step this instance has started (leave, release) is done."""
        for _ in range(3):  # let just-cancelled acquire() tasks start their clean-up
            await asyncio.sleep(0)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)

    async def acquire(self, ticket: Ticket) -> Grant:
        """Wait for a slot; raises a SchedulerError (QueueFull, Evicted, IdentityQueueFull, ...)."""
        rid = ticket.request_id
        if rid in self._waiters or rid in self._held:
            raise ValueError(f"request {rid!r} is already queued")
        if not self.pool.candidates(ticket.model):
            retry = max(1, math.ceil(self.pool.interval))
            raise NoBackend("no healthy backend serves this model", retry_after=retry)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(ticket, loop.create_future(), self._now())
        # Registered first: a grant can reach the inbox before the enqueue reply does.
        self._waiters[rid] = waiter
        try:
            reply = await self._run("enqueue", rid, *self._ticket_args(ticket))
        except (RedisError, OSError) as exc:
            self._abandon(waiter)
            log.warning("redis scheduler enqueue failed: %r", exc)
            raise SchedulerError("the shared queue is unavailable", retry_after=5) from exc
        except BaseException:
            self._abandon(waiter)
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # a cancellation redis-py swallowed
            self._abandon(waiter)
            raise asyncio.CancelledError
        if self._waiters.get(rid) is not waiter:
            # Granted through the inbox, or cancelled / timed out while the enqueue was on
            # its way. The leave _abandon spawned may have reached Redis before the enqueue
            # did, so leave again now (it is idempotent).
            if waiter.grant is None:
                self._spawn(self._run("leave", rid))
            return await waiter.future
        kind = text(reply[0])
        if kind != "queued":
            del self._waiters[rid]
            if kind == "granted":
                return self._hold(ticket, text(reply[1]), waited=0.0, points=float(text(reply[2])))
            if kind == "full":
                raise QueueFull("the queue is full, try again later", retry_after=self._full_retry())
            if kind == "identity_full":
                message = f"this identity already has {int(reply[1])} requests waiting"
                raise IdentityQueueFull(message, retry_after=self._full_retry())
            raise ValueError(f"request {rid!r} is already queued")
        waiter.member, waiter.position = text(reply[1]), int(reply[2]) + 1
        waiter.points = float(text(reply[3]))
        timer = loop.call_later(self.settings.queue_timeout, self._expire, rid)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            timer.cancel()

    def _ticket_args(self, ticket: Ticket) -> list:
        return [
            group_of(ticket.model),
            ticket.source,
            repr(float(ticket.priority)),
            repr(self.settings.aging_per_minute),
            self.instance,
            int(self.settings.queue_timeout * 1000),
            self.settings.max_queue,
            ticket.who,
            json.dumps(
                [[s.who, _or_none(s.max_queued), _or_none(s.max_concurrent)] for s in ticket.subjects]
            ),
            "",
            ticket.endpoint or "",
            "" if ticket.max_parallel is None else ticket.max_parallel,
            ticket.conversation or "",
        ]

    def _full_retry(self) -> int:
        slots = sum(b.slots for b in self.pool.backends)
        return retry_estimate(self._mean_hold, self._snapshot["queue_length"], slots)

    def release(self, grant: Grant) -> None:
        """Free the slot (idempotent); Redis hands it to the best waiting ticket of any instance."""
        if grant.released:
            return
        grant.released = True
        self._held.pop(grant.ticket.request_id, None)
        grant.backend.in_use = max(grant.backend.in_use - 1, 0)
        held = self._now() - grant.granted_at
        self._mean_hold += 0.1 * (held - self._mean_hold)
        self._spawn(self._run("leave", grant.ticket.request_id, repr(held)))

    def cancel(self, request_id: str, error: SchedulerError) -> bool:
        """Take a ticket of this instance out of the queue; its acquire() raises ``error``."""
        waiter = self._waiters.get(request_id)
        if waiter is None or waiter.future.done():
            return False
        self._abandon(waiter)
        waiter.future.set_exception(error)
        return True

    async def cancel_request(self, request_id: str, reason: str = ADMIN_CANCEL) -> bool:
        """An administrator's cancel, on whichever instance the request waits or streams: a waiting
        one fails with 503 ``reason``, an active one hears it through ``Grant.on_cancel``."""
        return bool(await self._run("cancel", request_id, reason))

    def eta(self, request_id: str) -> int | None:
        """Whole seconds until this waiting request likely gets a slot (as of the last tick)."""
        waiter = self._waiters.get(request_id)
        if waiter is None or waiter.position is None:
            return None
        waiter.wants_position = True
        backends = self.pool.candidates(waiter.ticket.model)
        return self.service.eta(group_of(waiter.ticket.model), backends, waiter.position)

    async def queue_view(self) -> list[dict]:
        """Every instance's waiting requests in dispatch order, then the active ones (§8)."""
        reply = await self._run("view", json.dumps([b.url for b in self.pool.backends]))
        return view_rows(reply, self.pool, self.settings, self.service)

    def position(self, request_id: str) -> int | None:
        """1-based place in the shared dispatch order (as of the last tick), None if not waiting."""
        waiter = self._waiters.get(request_id)
        if waiter is None:
            return None
        waiter.wants_position = True
        return waiter.position

    def waiting(self) -> list[Ticket]:
        """This instance's waiting tickets (the ones it can re-check and cancel)."""
        return [w.ticket for w in self._waiters.values() if not w.future.done()]

    def snapshot(self) -> dict:
        """Shared queue and slot numbers, as of the last tick."""
        return {**self._snapshot, "backends": self.pool.snapshot()}

    def _now(self) -> float:
        return time.monotonic() if self._aging_clock is None else self._aging_clock()

    def _hold(self, ticket: Ticket, url: str, *, waited: float, points: float) -> Grant:
        backend = self._backend(url)
        backend.in_use += 1
        backend.given(group_of(ticket.model))
        effective = ticket.priority + points - self.settings.aging_per_minute * waited / 60.0
        grant = Grant(ticket, backend, waited, points=points, effective=effective)
        grant.granted_at = self._now()
        self._held[ticket.request_id] = grant
        return grant

    def _backend(self, url: str) -> BackendState:
        for backend in self.pool.backends:
            if backend.url == url:
                return backend
        raise SchedulerError(f"granted a backend this instance does not know: {url}")

    def _on_grant(self, rid: str, url: str) -> None:
        """A grant notice from the inbox: wake the waiter, or give back a slot nobody wants now."""
        if rid in self._held:
            return  # the enqueue reply brought this grant first
        waiter = self._waiters.pop(rid, None)
        if waiter is None or waiter.future.done():
            self._spawn(self._run("leave", rid))
            return
        try:
            waited = self._now() - waiter.started
            waiter.grant = self._hold(waiter.ticket, url, waited=waited, points=waiter.points)
        except SchedulerError as exc:
            self._spawn(self._run("leave", rid))
            waiter.future.set_exception(exc)
            return
        waiter.future.set_result(waiter.grant)

    def _on_notice(self, notice: str) -> None:
        """A message from the inbox: ``g`` granted, ``e`` evicted, ``c`` cancelled by an administrator."""
        kind, _, rest = notice.partition("\n")
        if kind == "g":
            url, _, rid = rest.partition("\n")
            self._on_grant(rid, url)
        elif kind == "e":
            message = "the queue is full and a request ranked ahead of this one"
            self._fail_local(rest, Evicted(message, retry_after=self._full_retry()))
        elif kind == "c":
            rid, _, reason = rest.partition("\n")
            if not self.cancel(rid, AdminCancelled(reason)) and rid in self._held:
                self._held[rid].cancel(reason)

    def _fail_local(self, rid: str, error: SchedulerError) -> None:
        """Redis already took the ticket out: fail its local waiter without another leave."""
        waiter = self._waiters.pop(rid, None)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_exception(error)

    def _abandon(self, waiter: _Waiter) -> None:
        """Its task is gone (client left, cancel, timeout): leave the queue, or give back a racing grant."""
        if self._waiters.get(waiter.ticket.request_id) is waiter:
            del self._waiters[waiter.ticket.request_id]
            self._spawn(self._run("leave", waiter.ticket.request_id))
        elif waiter.grant is not None:
            self.release(waiter.grant)
        elif waiter.future.done() and not waiter.future.cancelled():
            waiter.future.exception()  # mark a racing cancel()/timeout error as seen

    def _expire(self, rid: str) -> None:
        timeout = self.settings.queue_timeout
        self.cancel(rid, QueueTimeout(f"waited in the queue for more than {timeout:g} seconds"))

    async def _run(self, command: str, *args: Any) -> Any:
        clock = "" if self._aging_clock is None else repr(self._aging_clock())
        return await self._script(
            args=[command, self.prefix, self._config.current(), self.lease_ms, clock, *args]
        )

    def _spawn(self, coro: Coroutine) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The lease still brings a slot back; say why it took longer.
            log.warning("redis scheduler step failed: %r", task.exception())

    def _poke(self) -> None:
        """A backend rejoined or changed models: dispatch now rather than at the next tick."""
        with contextlib.suppress(RuntimeError):  # no running loop: the next tick will do
            asyncio.get_running_loop()
            self._spawn(self._tick_once())

    async def _tick_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.tick)
            try:
                await self._tick_once()
            except Exception as exc:  # Redis away for a moment: keep trying
                if not self._closing:
                    log.warning("redis scheduler tick failed: %r", exc)

    async def _tick_once(self) -> None:
        """Heartbeat, lease refresh, stale clean-up, dispatch, and fresh numbers, in one call."""
        held = [[g.backend.url, rid] for rid, g in self._held.items()]
        wanted = [w for w in self._waiters.values() if w.wants_position and w.member]
        urls = [b.url for b in self.pool.backends]
        reply = await self._run(
            "tick",
            self.instance,
            int(self.settings.queue_timeout * 1000),
            json.dumps(held),
            json.dumps([w.member for w in wanted]),
            json.dumps(urls),
        )
        length, counts, oldest, now, ranks, in_use, service = reply
        load_service_times(self.service, service)
        for waiter, rank in zip(wanted, ranks, strict=True):
            if rank >= 0:
                waiter.position = rank + 1
        for backend, n in zip(self.pool.backends, in_use, strict=True):
            backend.in_use = int(n)
        self._snapshot = tick_snapshot(length, counts, oldest, now)

    async def _inbox_loop(self) -> None:
        inbox = f"{self.prefix}:granted:{self.instance}"
        while not self._closing:
            try:
                item = await self.redis.blpop([inbox], timeout=1)
            except Exception as exc:  # reconnect after a short pause; leases cover the gap
                if not self._closing:
                    log.warning("redis scheduler inbox failed: %r", exc)
                    await asyncio.sleep(0.5)
                continue
            if item is not None:
                self._on_notice(text(item[1]))


def _or_none(limit: int | None) -> int:
    return -1 if limit is None else limit
