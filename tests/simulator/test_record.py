"""What the simulator records: requests, headers, outcomes, disconnects; and its slot limit."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Iterator
from itertools import pairwise

import httpx
import pytest

from simulator import ThreadHandle
from simulator.faults import BUSY_MESSAGE
from tests.simulator.helpers import chat_body, ndjson

SLOW = {"X-Sim-Tokens": "200", "X-Sim-Delay": "0.05"}


def test_stats_count_requests_per_path_and_reset_forgets_them(sim: ThreadHandle, http: httpx.Client) -> None:
    http.post("/api/chat", json=chat_body())
    http.post("/api/chat", json=chat_body(stream=False))
    http.get("/api/tags")
    stats = sim.stats()
    assert stats["requests"] == {"/api/chat": 2, "/api/tags": 1}
    assert stats["outcomes"] == {"completed": 3} and stats["active"] == 0
    assert [(e["path"], e["model"], e["stream"]) for e in stats["log"][:2]] == [
        ("/api/chat", "llama3.2", None),
        ("/api/chat", "llama3.2", False),
    ]
    assert all(e["started"] <= e["dispatched"] <= e["first_byte"] <= e["finished"] for e in stats["log"][:2])
    sim.reset()
    assert sim.stats()["requests"] == {} and sim.stats()["log"] == []


def test_the_record_keeps_headers_and_body(sim: ThreadHandle, http: httpx.Client) -> None:
    http.post("/api/chat", json=chat_body(options={"num_ctx": 32768}), headers={"Authorization": "Bearer t"})
    entry = sim.entries("/api/chat")[0]
    assert entry["headers"]["authorization"] == "Bearer t"
    assert entry["body"]["options"] == {"num_ctx": 32768} and entry["body_size"] > 0
    assert entry["chunks"] == 6 and entry["status"] == 200


def test_stats_over_http_match_the_direct_view(sim: ThreadHandle, http: httpx.Client) -> None:
    http.get("/api/ps")
    over_http = http.get("/_sim/stats").json()
    assert over_http["requests"] == {"/api/ps": 1} == sim.stats()["requests"]
    assert http.post("/_sim/reset").json() == {"status": "ok"}
    assert http.get("/_sim/stats").json()["total"] == 0  # control calls are never recorded


def test_a_client_leaving_mid_stream_is_recorded_as_cancelled(sim: ThreadHandle, http: httpx.Client) -> None:
    with http.stream("POST", "/api/chat", json=chat_body(), headers=SLOW) as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(3)]
        left_at = time.time()
    entry = sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=2)["log"][-1]
    assert entry["outcome"] == "cancelled" and 3 <= entry["chunks"] < 200
    assert entry["finished"] - left_at < 1.0


@pytest.mark.costly  # paced streams
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Sim-Fault": "stall_mid=30,after=1"},
        {"X-Sim-First-Token-Delay": "30"},
        {"X-Sim-Fault": "stall_headers=30"},
    ],
    ids=["stalled-mid-stream", "before-the-first-token", "before-the-headers"],
)
def test_a_client_leaving_during_a_long_wait_is_seen_at_once(
    sim: ThreadHandle, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=sim.url, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            with client.stream("POST", "/api/chat", json=chat_body(), headers=headers) as response:
                for _ in response.iter_lines():
                    pass
    left_at = time.time()
    entry = sim.wait_for(lambda s: s["active"] == 0, timeout=2)["log"][-1]
    assert entry["outcome"] == "cancelled" and entry["finished"] - left_at < 1.0


@pytest.mark.costly  # paced streams
def test_per_request_headers_set_token_count_and_pacing(http: httpx.Client) -> None:
    started = time.monotonic()
    headers = {"X-Sim-Tokens": "3", "X-Sim-Delay": "0.1", "X-Sim-First-Token-Delay": "0.2"}
    lines = ndjson(http.post("/api/chat", json=chat_body(), headers=headers).text)
    assert len(lines) == 4 and lines[-1]["eval_count"] == 3
    assert time.monotonic() - started >= 0.4
    assert lines[-1]["prompt_eval_duration"] >= 190_000_000  # the first-token delay, in nanoseconds
    bad = http.post("/api/chat", json=chat_body(), headers={"X-Sim-Tokens": "many"})
    assert bad.status_code == 400 and "X-Sim-Tokens" in bad.json()["error"].title()


def test_a_full_simulator_answers_503_like_ollama(sim: ThreadHandle, http: httpx.Client) -> None:
    sim.configure(num_parallel=1, max_queue=0)
    with http.stream("POST", "/api/chat", json=chat_body(), headers=SLOW) as holding:
        lines = holding.iter_lines()  # keep it: dropping the iterator closes the connection
        next(lines)
        refused = http.post("/api/generate", json={"model": "llama3.2", "prompt": "x"})
        assert refused.status_code == 503 and refused.json() == {"error": BUSY_MESSAGE}
        assert http.get("/api/tags").status_code == 200  # only inference takes a slot
    assert sim.stats()["outcomes"]["rejected"] == 1


@pytest.mark.costly  # paced streams
async def test_waiting_requests_get_the_slot_in_arrival_order(sim: ThreadHandle) -> None:
    sim.configure(num_parallel=1, max_queue=2, token_delay=0.05)
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as client:

        async def ask(name: str, **pace: str) -> int:
            headers = {"X-Name": name, **pace}
            response = await client.post("/api/chat", json=chat_body(stream=False), headers=headers)
            return response.status_code

        # "a" holds the slot for 2 s, so that on a loaded machine b and c are still queued behind it.
        first = asyncio.create_task(ask("a", **{"X-Sim-Tokens": "10", "X-Sim-Delay": "0.2"}))
        await sim.wait_for_async(lambda s: s["running"] == 1)
        queued = [asyncio.create_task(ask("b"))]
        await sim.wait_for_async(lambda s: s["waiting"] == 1)
        queued.append(asyncio.create_task(ask("c")))
        await sim.wait_for_async(lambda s: s["waiting"] == 2)
        assert await ask("d") == 503
        assert await asyncio.gather(first, *queued) == [200, 200, 200]
    served = sorted(
        (e for e in sim.entries("/api/chat") if e["status"] == 200), key=lambda e: e["dispatched"]
    )
    assert [e["headers"]["x-name"] for e in served] == ["a", "b", "c"]
    # One at a time: each began only after the one before it had finished.
    assert all(later["dispatched"] >= earlier["finished"] for earlier, later in pairwise(served))


@pytest.mark.costly  # paced streams
def test_a_client_leaving_the_line_never_runs(sim: ThreadHandle, http: httpx.Client) -> None:
    sim.configure(num_parallel=1, max_queue=4)
    with http.stream("POST", "/api/chat", json=chat_body(), headers=SLOW) as holding:
        lines = holding.iter_lines()  # keep it: dropping the iterator closes the connection
        next(lines)
        with httpx.Client(base_url=sim.url, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                impatient.post("/api/chat", json=chat_body())
        stats = sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=2)
        assert stats["waiting"] == 0
    gone = [e for e in sim.entries("/api/chat") if e["outcome"] == "cancelled"][0]
    assert gone["dispatched"] is None and gone["chunks"] == 0
    assert http.post("/api/chat", json=chat_body()).status_code == 200  # the slot was not leaked


@pytest.mark.costly  # a long stream
def test_a_long_stream_without_delay_arrives_whole(http: httpx.Client) -> None:
    started = time.monotonic()
    response = http.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "x"}, headers={"X-Sim-Tokens": "20000"}
    )
    lines = ndjson(response.text)
    assert len(lines) == 20_001 and lines[-1]["eval_count"] == 20_000
    assert time.monotonic() - started < 10


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for 2,000 sockets in this process (client and in-thread server ends)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if wanted < 2200:
        pytest.skip(f"the open-file limit ({hard}) is too low for 1,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow  # a thousand sockets at once
async def test_a_thousand_concurrent_streams_are_served_together(sim: ThreadHandle, many_files: None) -> None:
    # Raw sockets: an HTTP client library would be the bottleneck here, not the simulator.
    host, port = sim.url.removeprefix("http://").split(":")
    body = json.dumps(chat_body()).encode()
    request = (
        f"POST /api/chat HTTP/1.1\r\nHost: sim\r\nX-Sim-Delay: 0.3\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body

    async def stream() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        try:
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.monotonic()
    replies = await asyncio.gather(*(stream() for _ in range(1000)))
    assert all(r.startswith(b"HTTP/1.1 200 ") and r.count(b'"done":false') == 5 for r in replies)
    assert all(r.count(b'"done":true') == 1 for r in replies)
    assert sim.stats()["max_active_inference"] > 800  # they really ran at the same time
    assert time.monotonic() - started < 15  # five tokens 0.3 s apart: about 1.2 s each
