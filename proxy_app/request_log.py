"""The request log: one ``request_log`` row per proxied request, written in batches off the stream.

Wiring, per finished proxied request (whatever its end — 2xx, 4xx, 499…)::

    rec = RequestRecord(request_id=..., method="POST", endpoint="/api/chat", status=200, ...)
    writer.record(rec)   # sync, O(1), never blocks: written with the next batch

Start-up: ``await writer.start()``; shut-down: ``await writer.close()`` (flushes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from common.models import RequestLog, utcnow

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
    ``waiting_upstream`` or ``streaming``. ``repeats`` is how many requests
    the row stands for (collapsed refusals, ``proxy_app/refusal_log.py``).
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
    repeats: int = 1  # more than 1: collapsed refusals (proxy_app/refusal_log.py)
    key_prefix: str | None = None  # a refused API key's display prefix
    end_user: str | None = None  # the person behind a shared key (its end_user_header's value)
    gpu_ms: float | None = None  # slot time, dispatch to last byte or failure (None: never held one)
    load_ms: float | None = None  # Ollama's load_duration, when its final chunk reported one
    model_loaded: bool | None = None  # Ollama's load_duration showed a load (docs/contract.md §12)
    adjusted: bool = False  # the gateway changed its load options or keep_alive

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


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; whether it was set (else the time ran out)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False  # the writer's interval: a batch is due whether or not anyone woke it
    return True
