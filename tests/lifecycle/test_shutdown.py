"""Graceful shutdown of the run command (docs/contract.md §10): SIGTERM and SIGINT, with and without Redis.

Waiting requests get 503 + ``Retry-After`` when shutdown starts (in-band when their headers went
out), an active stream finishes within ``SHUTDOWN_GRACE``, one still running after it ends with an
in-band error, the request log is flushed, the bundled simulator child stops, the exit status is 0.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import fresh_redis_url
from tests.lifecycle.support import (
    SIGNALS,
    admin_headers,
    alive,
    api_key,
    children,
    db_path,
    gateway_env,
    log_rows,
    signal_and_wait,
    stats,
)
from tests.live import LiveServer
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

# One Redis database per signal: run in parallel (pytest -n 2), the two Redis cases must not share a
# queue (fresh_redis_url empties its database: one case's gateway would lose the other's tickets).
REDIS_DB = {"SIGINT": 9, "SIGTERM": 4}
# The active stream runs for ACTIVE_TOKENS x 0.1 s: long enough that, on a loaded two-core machine,
# the two waiting requests are queued and the signal sent while it still runs; short beside GRACE.
ACTIVE_TOKENS = 120
GRACE = 60  # seconds; generous, so only a gateway that really waits past it fails the test
JOIN = 90  # seconds any client thread may take to end after the signal (bounded, never a fixed sleep)


def chat(stream: bool) -> dict:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": stream}


class Stream(threading.Thread):
    """A streamed /api/chat read line by line in the background."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.status: int | None = None
        self.lines: list[dict] = []
        self.first = threading.Event()
        self.ended_at: float | None = None

    def run(self) -> None:
        with httpx.stream(
            "POST", f"{self.url}/api/chat", json=chat(True), headers=self.headers, timeout=60
        ) as r:
            self.status = r.status_code
            for line in r.iter_lines():
                if line.strip():
                    self.lines.append(json.loads(line))
                    self.first.set()
        self.ended_at = time.monotonic()


class Whole(threading.Thread):
    """A non-streamed /api/chat in the background."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.response: httpx.Response | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        self.response = httpx.post(f"{self.url}/api/chat", json=chat(False), headers=self.headers, timeout=60)
        self.ended_at = time.monotonic()


def start(tmp_path, redis_db: int | None, **overrides) -> tuple[LiveServer, dict[str, str]]:
    extra = {"redis_url": fresh_redis_url(redis_db)} if redis_db is not None else {}
    env = gateway_env(tmp_path, max_concurrent=1, **extra, **overrides)
    server = LiveServer(env).start(timeout=60)
    return server, env


@pytest.mark.costly  # real processes stopped by signals
@pytest.mark.parametrize("redis", [False, True], ids=["local", "redis"])
@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_shutdown_fails_the_waiting_at_once_lets_the_active_stream_finish_and_exits_0(
    tmp_path, signame, redis
):
    server, env = start(tmp_path, REDIS_DB[signame] if redis else None, shutdown_grace=GRACE)
    try:
        assert "Started the bundled Ollama SIMULATOR" in server.output()
        simulators = children(server.process.pid)
        assert simulators, "the run command started no simulator child"
        admin = admin_headers(server.url)
        key = {"X-API-Key": api_key(server.url, admin)}
        active = Stream(server.url, {**key, "X-Sim-Tokens": str(ACTIVE_TOKENS), "X-Sim-Delay": "0.1"})
        active.start()
        assert active.first.wait(60), "the active stream never started"
        waiting_whole = Whole(server.url, key)
        waiting_stream = Stream(server.url, key)  # its 200 goes out early: its 503 comes in-band
        waiting_whole.start()
        waiting_stream.start()
        assert wait_until(lambda: stats(server.url, admin)["queue_length"] == 2, 60, interval=0.2)
        assert wait_until(lambda: waiting_stream.status == 200, 60)  # its headers went out while queued
        assert active.ended_at is None, "the active stream ended before the signal: the machine is too slow"

        signalled = time.monotonic()
        status = signal_and_wait(server, SIGNALS[signame], timeout=GRACE + JOIN)
        for thread in (active, waiting_whole, waiting_stream):
            thread.join(JOIN)
            assert not thread.is_alive(), f"{type(thread).__name__} never ended"
    finally:
        server.stop()

    assert status == 0, server.output()
    # The waiting were failed when shutdown started, not after the active stream (or the grace).
    refused = waiting_whole.response
    assert refused is not None and refused.status_code == 503
    assert refused.headers["Retry-After"].isdigit()
    assert refused.json() == {"error": "the gateway is shutting down"}
    assert waiting_whole.ended_at < active.ended_at
    assert waiting_stream.status == 200
    assert waiting_stream.lines[-1] == {"error": "the gateway is shutting down"}
    assert waiting_stream.ended_at < active.ended_at
    # The active stream finished whole within the grace.
    assert active.status == 200 and active.lines[-1]["done"] is True
    assert active.ended_at - signalled < GRACE
    # The bundled simulator stopped with the run command.
    assert wait_until(lambda: not any(alive(pid) for pid in simulators), 30)
    # Every request's row was flushed before exit.
    rows = sorted((row["status"], row["stage"]) for row in log_rows(db_path(env)))
    assert rows == [(200, None), (503, "queued"), (503, "queued")]


# Not `costly` on purpose (3.5 s): `scripts/test.sh --fast` keeps one test that stops a real gateway process.
def test_a_stream_still_running_when_the_grace_ends_gets_an_in_band_error_and_its_row(tmp_path):
    server, env = start(tmp_path, None, shutdown_grace=1)
    try:
        admin = admin_headers(server.url)
        key = {"X-API-Key": api_key(server.url, admin)}
        endless = Stream(server.url, {**key, "X-Sim-Tokens": "600", "X-Sim-Delay": "0.1"})
        endless.start()
        assert endless.first.wait(60)
        signalled = time.monotonic()
        status = signal_and_wait(server, signal.SIGTERM, timeout=JOIN)
        endless.join(JOIN)
        assert not endless.is_alive(), "the stream never ended"
        # No new connection is taken once shutdown started.
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/", timeout=2)
    finally:
        server.stop()
    assert status == 0, server.output()
    assert endless.lines[-1] == {"error": "the gateway is shutting down"}
    assert endless.ended_at - signalled < 30  # the grace (1 s), far from the 60 s of tokens left
    assert len(endless.lines) < 600
    rows = [(row["status"], row["stage"], row["error"]) for row in log_rows(db_path(env))]
    assert rows == [(503, "streaming", "the gateway is shutting down")]
