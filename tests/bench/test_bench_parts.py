"""The benchmark harness's parts: the stream client, the load generators, the table and the order check."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench import streams
from bench.loadgen import run_h2load, run_wrk
from bench.queue_e2e import created_ns, out_of_order
from bench.queue_inprocess import parse_line
from bench.report import Row, failures, table
from bench.scenarios import chat_body
from simulator.server import serve_in_thread

LINE = b'{"model":"m","message":{"role":"assistant","content":"tok"},"done":false}\n'
DONE = b'{"model":"m","created_at":"2025-01-01T00:00:00.5Z","done":true}\n'


async def serve_once(body_chunks: list[bytes], *, chunked: bool = True, status: int = 200):
    """A one-shot raw HTTP server sending ``body_chunks`` (chunked or with a length); returns its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/x-ndjson\r\n"
        if chunked:
            writer.write((head + "transfer-encoding: chunked\r\n\r\n").encode())
            for piece in body_chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            body = b"".join(body_chunks)
            writer.write((head + f"content-length: {len(body)}\r\n\r\n").encode() + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def fetch_from(chunks: list[bytes], **kwargs) -> streams.StreamResult:
    server, port = await serve_once(chunks, **kwargs)
    async with server:
        request = streams.build_request("127.0.0.1", port, "/api/chat", {"stream": True}, {"X-API-Key": "k"})
        return await streams.fetch("127.0.0.1", port, request, timeout=5)


async def test_it_counts_every_line_of_a_chunked_stream_and_sees_it_done():
    result = await fetch_from([LINE] * 5 + [DONE])
    assert (result.status, result.lines, result.done, result.ok) == (200, 6, True, True)
    assert result.ttfb is not None and result.total is not None and result.ttfb <= result.total


async def test_it_counts_lines_split_across_chunks():
    body = LINE * 3 + DONE
    result = await fetch_from([body[i : i + 7] for i in range(0, len(body), 7)])
    assert (result.lines, result.ok) == (4, True)
    assert result.last_line == DONE.strip()


async def test_it_keeps_the_last_event_of_an_sse_stream_not_its_blank_line():
    events = [
        b"event: content_block_delta\ndata: {}\n\n",
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    result = await fetch_from(events)
    assert result.last_line == b'data: {"type":"message_stop"}'
    assert result.lines == 6


async def test_it_reads_a_body_with_a_content_length():
    result = await fetch_from([DONE.strip()], chunked=False)
    assert (result.lines, result.ok) == (1, True)


async def test_a_stream_without_a_done_line_is_not_ok():
    result = await fetch_from([LINE] * 3)
    assert (result.lines, result.done, result.ok) == (3, False, False)


async def test_an_in_band_error_is_not_ok():
    result = await fetch_from([LINE, b'{"error":"upstream went away"}\n'])
    assert not result.ok
    assert "upstream went away" in result.error


async def test_an_error_status_is_not_ok():
    result = await fetch_from([b'{"error":"nope","done":true}'], status=401, chunked=False)
    assert (result.status, result.ok) == (401, False)


async def test_a_refused_connection_is_an_error_not_an_exception():
    server, port = await serve_once([])
    server.close()
    await server.wait_closed()
    request = streams.build_request("127.0.0.1", port, "/", {}, {})
    result = await streams.fetch("127.0.0.1", port, request, timeout=5)
    assert result.error and not result.ok


@pytest.mark.costly  # waits out a timeout
async def test_a_stalled_stream_times_out_within_its_bound():
    async def stall(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # until the client gives up and leaves
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        request = streams.build_request("127.0.0.1", port, "/", {}, {})
        result = await streams.fetch("127.0.0.1", port, request, timeout=0.3)
    assert result.error == "timed out after 0.3 s"


@pytest.fixture(scope="module")
def simulator():
    """The bundled simulator in a thread: fast replies, no concurrency cap."""
    handle = serve_in_thread(tokens=1000, token_delay=0.0, num_parallel=0)
    yield handle
    handle.stop()


@pytest.mark.costly  # a second of wrk
def test_wrk_reports_throughput_and_percentiles_from_the_simulator(simulator):
    result = run_wrk(
        f"{simulator.url}/api/chat", chat_body(3, stream=False), {}, connections=2, threads=1, seconds=1
    )
    assert result.requests > 10 and result.errors == 0
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.rps > 10


@pytest.mark.costly  # a second of wrk
def test_wrk_counts_error_statuses(simulator):
    body = {**chat_body(3, stream=False), "model": "no-such-model"}
    result = run_wrk(f"{simulator.url}/api/chat", body, {}, connections=1, threads=1, seconds=1)
    assert result.requests > 0 and result.errors == result.requests


def test_h2load_reports_time_to_first_byte_per_request(simulator):
    result = run_h2load(f"{simulator.url}/api/chat", chat_body(3, stream=False), {}, requests=20, period_ms=2)
    assert (result.requests, result.succeeded, result.failed) == (20, 20, 0)
    assert 0 < result.ttfb_mean_ms <= result.ttfb_max_ms


def test_the_stream_client_reads_simulator_streams_whole(simulator):
    port = simulator.port
    request = streams.build_request("127.0.0.1", port, "/api/chat", chat_body(50, stream=True), {})
    results = streams.run(streams.fetch_many("127.0.0.1", port, [request] * 20, timeout=30, connect_burst=5))
    assert [r.ok for r in results] == [True] * 20
    assert {r.lines for r in results} == {51}


def test_the_table_shows_ratio_budget_and_verdict_on_one_line_per_row():
    rows = [
        Row("S2", "req/s", 1000.0, 400.0, "≥ 0.25× direct", True),
        Row("S4", "chunks/s", 100.0, 20.0, "≥ 0.30× direct", False),
        Row("S9", "harness error: boom\nwith | a pipe", None, None, "runs", False),
    ]
    text = table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    assert "0.40×" in lines[2] and "pass" in lines[2]
    assert "0.20×" in lines[3] and "FAIL" in lines[3]
    assert "boom with \\| a pipe" in lines[4]
    assert [r.id for r in failures(rows)] == ["S4", "S9"]


def test_the_order_check_counts_every_inversion():
    assert out_of_order([0, 0, 1, 5, 9]) == 0
    assert out_of_order([0, 2, 1, 3, 0]) == 2


def test_created_at_is_read_to_the_nanosecond_whatever_its_digits():
    short = json.dumps({"created_at": "2025-01-01T00:00:00.5Z"}).encode()
    long = json.dumps({"created_at": "2025-01-01T00:00:00.123456789Z"}).encode()
    assert created_ns(long) < created_ns(short)
    assert created_ns(short) - created_ns(long) == 376_543_211


def test_the_queue_benchmark_lines_are_read_in_the_runner_columns():
    row = parse_line("| Q1 | enqueue, µs | — | 3.1 | — | ≤ 50 µs | pass |")
    assert row == Row("Q1", "enqueue, µs", "—", "3.1", "≤ 50 µs", True)
    assert parse_line("| id | metric | direct | gateway | ratio | budget | result |") is None
    assert parse_line("|----|----|----:|----:|----:|----|----|") is None
