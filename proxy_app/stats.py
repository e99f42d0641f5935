"""What the gateway measures: the request log (batched, off the stream) and live stats.

Wiring, per finished proxied request (whatever its end — 2xx, 4xx, 499…)::

    rec = RequestRecord(request_id=..., method="POST", endpoint="/api/chat", status=200, ...)
    writer.record(rec)   # sync, O(1), never blocks: one request-log row, written in a batch
    live.observe(rec)    # sync, O(1): rates, waits, statuses, tokens for /api/admin/stats

At dispatch (slot granted), optionally ``live.dispatched(request_id, source, wait_ms)``
so the wait counts when it happened rather than when the stream ends. Every
second, ``live.sample(scheduler.snapshot())`` for the charts' queue history.
Start-up: ``await writer.start()``; shut-down: ``await writer.close()`` (flushes).
``GET /api/admin/stats`` answers ``live.payload(scheduler.snapshot())``.

The scheduler snapshot is a dict; missing keys count as zero/empty::

    {"queue_length": 3, "active_requests": 2,
     "queue_by_source": {"direct_api": 1, "custom_app": 2}, "active_by_source": {"web_chat": 2},
     "backends": [{"url": "http://gpu:11434", "healthy": True, "slots": 2, "in_use": 2}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from common.models import RequestLog, iso, utcnow
from common.sources import RequestSource

log = logging.getLogger(__name__)

# String columns are cut to their width: an over-long value must not make
# PostgreSQL refuse a whole batch.
_WIDTHS = {
    column.name: column.type.length
    for column in RequestLog.__table__.columns
    if isinstance(column.type, sa.String) and column.type.length
}
_IDENTITY = ("api_key_id", "whitelist_entry_id", "user_id")


_INSERT = RequestLog.__table__.insert()


@dataclass(slots=True, kw_only=True)
class RequestRecord:
    """One finished proxied request: a ``request_log`` row and a live-stats sample.

    Times are milliseconds from the request's arrival at the gateway:
    ``queue_wait_ms`` until a slot was granted (None if never dispatched),
    ``ttfb_ms`` until Ollama's first byte, ``duration_ms`` until the last byte
    was sent or the client left. ``status`` is 499 for a client that left;
    ``stage`` says where a request that did not finish well ended: ``queued``,
    ``waiting_upstream`` or ``streaming``.
    """

    request_id: str
    method: str
    endpoint: str
    status: int
    created_at: datetime = field(default_factory=utcnow)
    source: str | None = None
    api_key_id: int | None = None
    whitelist_entry_id: int | None = None
    user_id: int | None = None
    client_ip: str | None = None
    model: str | None = None
    backend: str | None = None
    stage: str | None = None
    error: str | None = None
    queue_wait_ms: float | None = None
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware (common.models.utcnow())")

    def as_row(self) -> dict:
        """The ``request_log`` row, strings cut to their column's width."""
        # Every field is a scalar: a plain read, not dataclasses.asdict's deep copy.
        row = {name: getattr(self, name) for name in _FIELDS}
        for name, width in _WIDTHS.items():
            value = row[name]
            if isinstance(value, str) and len(value) > width:
                row[name] = value[:width]
        return row


_FIELDS = tuple(f.name for f in fields(RequestRecord))


class RequestLogWriter:
    """Buffers request-log rows and writes them in batches from one background task.

    ``record()`` only appends to a bounded buffer: a slow or failing database
    never slows a stream. When the buffer is full, new rows are dropped and
    counted in ``dropped_total``. A failed batch stays at the head of the
    buffer and is retried with backoff; a row the database refuses outright
    (a foreign key gone, a bad value) is retried without its identity links,
    then dropped and counted, so one bad row never stalls the log.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        *,
        max_buffer: int = 10_000,
        batch_size: int = 500,
        interval: float = 0.5,
        max_backoff: float = 30.0,
        write_timeout: float = 30.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self.write_timeout = write_timeout
        self.close_timeout = close_timeout
        self._buffer: deque[RequestRecord] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._failing = False
        self.dropped_total = 0
        self.written_total = 0

    @property
    def buffer_length(self) -> int:
        """Rows waiting to be written (including a batch being written)."""
        return len(self._buffer)

    def record(self, rec: RequestRecord) -> None:
        """Queue one row for writing; never awaits, never raises for a full buffer."""
        if len(self._buffer) >= self.max_buffer:
            self.dropped_total += 1
            return
        self._buffer.append(rec)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer (once; later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def close(self) -> None:
        """Stop the writer and flush every buffered row (bounded by ``close_timeout``)."""
        self._stop.set()
        self._wake.set()
        try:
            async with asyncio.timeout(self.close_timeout):
                if self._task is not None:
                    await self._task
                delay = 0.05
                while self._buffer:
                    if await self._write_batch():
                        delay = 0.05
                    else:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
        except TimeoutError:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._buffer:
            log.error("request log: %d rows could not be written before shut-down", len(self._buffer))
            self.dropped_total += len(self._buffer)
            self._buffer.clear()

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                delay = min(self.max_backoff, self.interval * 2**failures)
                await _wait(self._stop, delay)
            else:
                await _wait(self._wake, self.interval)
                self._wake.clear()
            if self._stop.is_set():
                return
            failures = 0 if await self._drain() else failures + 1

    async def _drain(self) -> bool:
        # One batch a round, more only while a backlog of full batches is waiting: rows
        # that arrive during a write wait for the next round instead of going out in a
        # stream of tiny transactions (each costs a commit, whatever its size).
        while self._buffer:
            if not await self._write_batch():
                return False
            if len(self._buffer) < self.batch_size:
                break
        return True

    async def _write_batch(self) -> bool:
        batch = list(itertools.islice(self._buffer, self.batch_size))
        try:
            await self._insert([rec.as_row() for rec in batch])
        except (sa.exc.IntegrityError, sa.exc.DataError):
            return await self._write_one_by_one(len(batch))
        except Exception as exc:  # any other failure keeps the rows for a retry
            self._note_failure(exc)
            return False
        self._consume(len(batch))
        return True

    async def _write_one_by_one(self, count: int) -> bool:
        for _ in range(count):
            row = self._buffer[0].as_row()
            try:
                await self._insert_refused_row(row)
            except Exception as exc:
                self._note_failure(exc)
                return False
            self._consume(1)
        return True

    async def _insert_refused_row(self, row: dict) -> None:
        try:
            await self._insert([row])
            return
        except sa.exc.IntegrityError:
            # The key, entry or user was deleted meanwhile: keep the row without the link.
            unlinked = {**row, **dict.fromkeys(_IDENTITY)}
        except sa.exc.DataError as exc:
            log.error("request log: dropped row %s: %s", row["request_id"], exc.orig)
            self.dropped_total += 1
            return
        try:
            await self._insert([unlinked])
        except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
            log.error("request log: dropped row %s: %s", row["request_id"], exc.orig)
            self.dropped_total += 1

    async def _insert(self, rows: list[dict]) -> None:
        # A Core insert of the table: one executemany, without the ORM's bulk-persistence layer.
        async with asyncio.timeout(self.write_timeout), self._sessionmaker() as session:
            async with session.begin():
                await session.execute(_INSERT, rows)

    def _consume(self, count: int) -> None:
        for _ in range(count):
            self._buffer.popleft()
        self.written_total += count
        if self._failing:
            self._failing = False
            log.warning("request log: writing again (%d rows buffered)", len(self._buffer))

    def _note_failure(self, exc: Exception) -> None:
        if not self._failing:  # once per outage, not once per retry
            self._failing = True
            log.warning("request log: write failed, keeping %d rows: %r", len(self._buffer), exc)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


SOURCES: tuple[str, ...] = tuple(source.value for source in RequestSource)
RATE_WINDOW = 60  # seconds: requests per minute, tokens per second
WAIT_WINDOW = 300  # seconds: waits and status counts
HISTORY_STEP = 10  # seconds per chart point
HISTORY_POINTS = 180  # 30 minutes of chart
_MAX_DISPATCHED = 100_000  # bound on waits reported early, in case a request is never observed


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class _Tally:
    """Counts over one stretch of time: one second of the window, or one chart point."""

    __slots__ = ("start", "requests", "statuses", "waits", "tokens", "generation_ms", "queue", "active")

    def __init__(self, start: int) -> None:
        self.start = start
        self.requests: dict[str | None, int] = {}
        self.statuses: dict[int, int] = {}
        self.waits: dict[str | None, list[float]] = {}  # seconds
        self.tokens = 0
        self.generation_ms = 0.0
        self.queue: int | None = None  # the highest sampled queue length in a chart point
        self.active: int | None = None

    def add(self, rec: RequestRecord, count_wait: bool) -> None:
        self.requests[rec.source] = self.requests.get(rec.source, 0) + 1
        self.statuses[rec.status] = self.statuses.get(rec.status, 0) + 1
        if count_wait and rec.queue_wait_ms is not None:
            self.add_wait(rec.source, rec.queue_wait_ms)
        if rec.completion_tokens and rec.duration_ms is not None:
            # The time the request held its slot: prompt evaluation and generation.
            held = rec.duration_ms - (rec.queue_wait_ms or 0.0)
            if held > 0:
                self.tokens += rec.completion_tokens
                self.generation_ms += held

    def add_wait(self, source: str | None, wait_ms: float) -> None:
        self.waits.setdefault(source, []).append(wait_ms / 1000)


def _tokens_per_second(tallies: Iterable[_Tally]) -> float:
    tokens = generation_ms = 0.0
    for tally in tallies:
        tokens += tally.tokens
        generation_ms += tally.generation_ms
    return round(tokens / (generation_ms / 1000), 1) if generation_ms else 0.0


def _wait_summary(waits: list[float]) -> dict[str, float]:
    waits.sort()
    return {
        "average_wait_time": round(sum(waits) / len(waits), 3) if waits else 0.0,
        "p50_wait_time": round(percentile(waits, 50), 3),
        "p95_wait_time": round(percentile(waits, 95), 3),
    }


class LiveStats:
    """Rolling counters behind ``GET /api/admin/stats`` and the dashboard's charts.

    Per-second tallies cover the last ``WAIT_WINDOW`` seconds; chart points of
    ``HISTORY_STEP`` seconds cover the last ``HISTORY_POINTS`` steps. Waits
    are in seconds; percentiles are exact (nearest rank) over the window.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._seconds: deque[_Tally] = deque()
        self._points: deque[_Tally] = deque(maxlen=HISTORY_POINTS)
        self._point: _Tally | None = None
        self._early_waits: dict[str, None] = {}  # insertion-ordered set of request ids

    def dispatched(self, request_id: str, source: str | None, wait_ms: float) -> None:
        """Count a request's queue wait now, as it gets its slot (``observe`` then skips it)."""
        now = self._clock()
        self._second(now).add_wait(source, wait_ms)
        self._chart_point(now).add_wait(source, wait_ms)
        self._early_waits[request_id] = None
        if len(self._early_waits) > _MAX_DISPATCHED:
            del self._early_waits[next(iter(self._early_waits))]

    def observe(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        now = self._clock()
        count_wait = rec.request_id not in self._early_waits
        self._early_waits.pop(rec.request_id, None)
        self._second(now).add(rec, count_wait)
        self._chart_point(now).add(rec, count_wait)

    def sample(self, snapshot: Mapping) -> None:
        """Record the scheduler's queue and active counts for the charts (call every second)."""
        point = self._chart_point(self._clock())
        queue, active = int(snapshot.get("queue_length", 0)), int(snapshot.get("active_requests", 0))
        point.queue = queue if point.queue is None else max(point.queue, queue)
        point.active = active if point.active is None else max(point.active, active)

    def payload(self, snapshot: Mapping) -> dict:
        """The ``/api/admin/stats`` body: live numbers, by source, and chart history."""
        now = self._clock()
        self._chart_point(now)  # closes finished chart points, even when idle
        self._evict(int(now))
        recent = [t for t in self._seconds if t.start > now - RATE_WINDOW]
        waits: dict[str | None, list[float]] = {}
        statuses: dict[int, int] = {}
        for tally in self._seconds:
            for source, values in tally.waits.items():
                waits.setdefault(source, []).extend(values)
            for status, count in tally.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        queue_by_source = snapshot.get("queue_by_source") or {}
        active_by_source = snapshot.get("active_by_source") or {}
        by_source = {
            source: {
                "queue_length": int(queue_by_source.get(source, 0)),
                "active_requests": int(active_by_source.get(source, 0)),
                "requests_per_minute": sum(t.requests.get(source, 0) for t in recent),
                **_wait_summary(list(waits.get(source, []))),
            }
            for source in SOURCES
        }
        overall = _wait_summary([w for values in waits.values() for w in values])
        return {
            "queue_length": int(snapshot.get("queue_length", 0)),
            "active_requests": int(snapshot.get("active_requests", 0)),
            "requests_per_minute": sum(sum(t.requests.values()) for t in recent),
            "average_wait_time": overall["average_wait_time"],
            "p95_wait_time": overall["p95_wait_time"],
            "tokens_per_second": _tokens_per_second(recent),
            "by_source": by_source,
            "backends": [dict(backend) for backend in snapshot.get("backends") or ()],
            "status_counts": {str(status): statuses[status] for status in sorted(statuses)},
            "generated_at": iso(datetime.fromtimestamp(self._wall_clock(), UTC)),
            "history": self._history(now),
        }

    def _second(self, now: float) -> _Tally:
        second = int(now)
        if not self._seconds or self._seconds[-1].start != second:
            self._evict(second)
            self._seconds.append(_Tally(second))
        return self._seconds[-1]

    def _evict(self, second: int) -> None:
        while self._seconds and self._seconds[0].start <= second - WAIT_WINDOW:
            self._seconds.popleft()

    def _chart_point(self, now: float) -> _Tally:
        start = int(now // HISTORY_STEP * HISTORY_STEP)
        point = self._point
        if point is None or start != point.start:
            if point is not None:
                self._points.append(point)
                # Idle stretches (no sample, no request) still take their place on the time axis.
                gap = range(point.start + HISTORY_STEP, start, HISTORY_STEP)
                for missing in gap[-HISTORY_POINTS:]:
                    self._points.append(_Tally(missing))
            self._point = point = _Tally(start)
        return point

    def _history(self, now: float) -> list[dict]:
        offset = self._wall_clock() - now  # monotonic → wall-clock seconds
        scale = 60 / HISTORY_STEP
        return [
            {
                "at": iso(datetime.fromtimestamp(point.start + offset, UTC)),
                "queue_length": point.queue,
                "active_requests": point.active,
                "tokens_per_second": _tokens_per_second((point,)),
                "by_source": {
                    source: {
                        "requests_per_minute": round(point.requests.get(source, 0) * scale, 1),
                        "p50_wait_time": round(percentile(sorted(point.waits.get(source, [])), 50), 3),
                        "p95_wait_time": round(percentile(sorted(point.waits.get(source, [])), 95), 3),
                    }
                    for source in SOURCES
                },
            }
            for point in self._points
        ]
