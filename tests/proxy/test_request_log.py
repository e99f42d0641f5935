"""The request-log writer (docs/contract.md §6): one row per request, in batches, none lost on shut-down."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from common.db import make_async_engine, make_async_sessionmaker
from common.models import APIKey, RequestLog
from proxy_app.request_log import RequestLogWriter, RequestRecord


@pytest.fixture
async def sessions(settings):
    engine = make_async_engine(settings.database_url)
    yield make_async_sessionmaker(engine)
    await engine.dispose()


class TroubledSessions:
    """Sessions on the real database whose writes stall at a gate, or fail a few times first."""

    def __init__(self, real, failures: int = 0) -> None:
        self.real = real
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = failures
        self.attempts = 0

    def __call__(self):
        session = self.real()
        execute = session.execute

        async def troubled(*args, **kwargs):
            self.attempts += 1
            await self.gate.wait()
            if self.failures:
                self.failures -= 1
                raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
            return await execute(*args, **kwargs)

        session.execute = troubled
        return session


def make_record(number: int, **fields) -> RequestRecord:
    values = {
        "request_id": f"req-{number:05d}",
        "method": "POST",
        "endpoint": "/api/chat",
        "status": 200,
        "source": "direct_api",
        "client_ip": "10.0.0.5",
        "model": "llama3.2",
    }
    values.update(fields)
    return RequestRecord(**values)


async def stored_rows(sessions) -> list[RequestLog]:
    async with sessions() as session:
        return list(await session.scalars(sa.select(RequestLog).order_by(RequestLog.request_id)))


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def row_count_is(sessions, expected: int) -> bool:
    return len(await stored_rows(sessions)) == expected


async def test_it_writes_every_record_as_one_row_with_its_fields(sessions):
    writer = RequestLogWriter(sessions, batch_size=500, interval=0.01)
    await writer.start()
    created = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
    writer.record(
        make_record(
            0,
            created_at=created,
            source="web_chat",
            user_id=None,
            whitelist_entry_id=None,
            endpoint="/v1/chat/completions",
            backend="http://gpu:11434",
            status=499,
            stage="streaming",
            error="client went away",
            queue_wait_ms=1500.5,
            ttfb_ms=2100.0,
            duration_ms=9000.25,
            prompt_tokens=26,
            completion_tokens=120,
        )
    )
    for number in range(1, 1200):
        writer.record(make_record(number))
    await writer.close()

    rows = await stored_rows(sessions)
    assert len(rows) == 1200
    assert len({row.request_id for row in rows}) == 1200
    first = rows[0]
    assert (first.request_id, first.created_at, first.source) == ("req-00000", created, "web_chat")
    assert (first.method, first.endpoint, first.model, first.backend) == (
        "POST",
        "/v1/chat/completions",
        "llama3.2",
        "http://gpu:11434",
    )
    assert (first.status, first.stage, first.error, first.client_ip) == (
        499,
        "streaming",
        "client went away",
        "10.0.0.5",
    )
    assert (first.queue_wait_ms, first.ttfb_ms, first.duration_ms) == (1500.5, 2100.0, 9000.25)
    assert (first.prompt_tokens, first.completion_tokens) == (26, 120)
    assert writer.written_total == 1200 and writer.dropped_total == 0


async def test_it_writes_in_the_background_while_running(sessions):
    writer = RequestLogWriter(sessions, interval=0.01)
    await writer.start()
    for number in range(3):
        writer.record(make_record(number))
    await eventually(lambda: row_count_is(sessions, 3))
    assert writer.buffer_length == 0
    await writer.close()


async def test_a_full_batch_is_written_before_the_interval_ends(sessions):
    writer = RequestLogWriter(sessions, batch_size=10, interval=60)
    await writer.start()
    await asyncio.sleep(0.05)  # the writer is now waiting out its long interval
    for number in range(12):
        writer.record(make_record(number))
    await eventually(lambda: row_count_is(sessions, 10))
    writer.record(make_record(99))
    await asyncio.sleep(0.1)
    # The rest is below a batch: it waits for the interval, not a transaction of its own.
    assert writer.buffer_length == 3
    assert await row_count_is(sessions, 10)
    await writer.close()
    assert await row_count_is(sessions, 13)


async def test_a_backlog_of_full_batches_is_written_back_to_back(sessions):
    writer = RequestLogWriter(sessions, batch_size=10, interval=60)
    await writer.start()
    await asyncio.sleep(0.05)
    for number in range(35):
        writer.record(make_record(number))
    await eventually(lambda: row_count_is(sessions, 30))
    await asyncio.sleep(0.1)
    assert writer.buffer_length == 5
    await writer.close()
    assert await row_count_is(sessions, 35)


async def test_close_flushes_every_buffered_row(sessions):
    writer = RequestLogWriter(sessions, interval=60)
    await writer.start()
    for number in range(7):
        writer.record(make_record(number))
    await writer.close()
    assert await row_count_is(sessions, 7)
    assert writer.buffer_length == 0


@pytest.mark.costly  # waits for the database to recover
async def test_a_stalled_database_never_blocks_record_and_rows_arrive_once_it_recovers(sessions):
    troubled = TroubledSessions(sessions)
    troubled.gate.clear()
    writer = RequestLogWriter(troubled, interval=0.01)
    await writer.start()
    writer.record(make_record(0))
    await eventually(lambda: _true_when(troubled.attempts >= 1))  # the writer is stuck in the database

    started = time.perf_counter()
    for number in range(1, 2000):
        writer.record(make_record(number))
    assert time.perf_counter() - started < 0.5
    assert writer.buffer_length == 2000
    assert await row_count_is(sessions, 0)

    troubled.gate.set()
    await eventually(lambda: row_count_is(sessions, 2000))
    assert writer.buffer_length == 0 and writer.dropped_total == 0
    await writer.close()


async def test_a_failing_database_keeps_the_rows_and_retries(sessions):
    troubled = TroubledSessions(sessions, failures=3)
    writer = RequestLogWriter(troubled, interval=0.01)
    await writer.start()
    for number in range(5):
        writer.record(make_record(number))
    await eventually(lambda: row_count_is(sessions, 5))
    assert troubled.attempts >= 4
    assert writer.dropped_total == 0
    await writer.close()


async def test_a_full_buffer_drops_new_rows_and_counts_them(sessions):
    writer = RequestLogWriter(sessions, max_buffer=5)
    for number in range(8):
        writer.record(make_record(number))
    assert writer.buffer_length == 5
    assert writer.dropped_total == 3
    await writer.close()
    assert [row.request_id for row in await stored_rows(sessions)] == [f"req-{n:05d}" for n in range(5)]


@pytest.mark.costly  # waits out the close timeout
async def test_close_gives_up_on_a_dead_database_and_counts_the_loss(sessions):
    troubled = TroubledSessions(sessions, failures=10**9)
    writer = RequestLogWriter(troubled, interval=0.01, close_timeout=0.3)
    await writer.start()
    for number in range(4):
        writer.record(make_record(number))
    started = time.monotonic()
    await writer.close()
    assert time.monotonic() - started < 2
    assert writer.dropped_total == 4
    assert writer.buffer_length == 0


async def test_a_row_whose_key_was_deleted_is_kept_without_the_link(sessions):
    async with sessions() as session, session.begin():
        key = APIKey(name="ci", key_hash="a" * 64, prefix="sdk_abcd", priority=2)
        session.add(key)
    writer = RequestLogWriter(sessions)
    writer.record(make_record(0, source="custom_app", api_key_id=key.id))
    writer.record(make_record(1, source="custom_app", api_key_id=key.id + 1000))  # gone
    writer.record(make_record(2))
    await writer.close()

    rows = await stored_rows(sessions)
    assert [(row.request_id, row.api_key_id) for row in rows] == [
        ("req-00000", key.id),
        ("req-00001", None),
        ("req-00002", None),
    ]
    assert writer.dropped_total == 0


async def test_over_long_strings_are_cut_to_their_column(sessions):
    writer = RequestLogWriter(sessions)
    writer.record(make_record(0, error="x" * 2000, endpoint="/api/" + "e" * 500))
    await writer.close()
    (row,) = await stored_rows(sessions)
    assert row.error == "x" * 500
    assert len(row.endpoint) == 200


def test_a_record_refuses_a_naive_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        make_record(0, created_at=datetime(2024, 1, 1))


async def _true_when(value: bool) -> bool:
    return value
