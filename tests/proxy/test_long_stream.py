"""Streams are never cut by a framework default (Quart's 60 s RESPONSE_TIMEOUT, httpx's 5 s)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.proxy.support import chat_body, ndjson, sse_events

pytestmark = pytest.mark.costly  # each test serves the gateway and streams for seconds

TOKENS = 10
PACED = {"X-Sim-Tokens": str(TOKENS), "X-Sim-Delay": "0.3", "X-Forwarded-For": "10.0.0.5"}  # ~3 s
SHORT = 1.0  # seconds: every timeout between the client and Ollama, a third of the stream's length


def stream(url: str, path: str, body: dict) -> tuple[float, bytes]:
    """Read a whole stream; how long it took and its bytes."""
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        with client.stream("POST", url + path, json=body, headers=PACED) as response:
            assert response.status_code == 200
            data = response.read()
    return time.monotonic() - started, data


def test_a_stream_three_times_longer_than_every_timeout_arrives_whole(gw_settings, accounts, serve):
    # Quart's RESPONSE_TIMEOUT (60 s by default) bounds a whole response, so at 1 s here a 3 s stream
    # would be cut if it applied. httpx's read timeout is off upstream (the gateway times reads itself
    # with FIRST_BYTE_TIMEOUT and IDLE_TIMEOUT, per phase): at 1 s each they must not cut it either.
    settings = gw_settings(
        OLLAMA_URLS=gw_settings().backends[0].url + "=2", FIRST_BYTE_TIMEOUT=SHORT, IDLE_TIMEOUT=SHORT
    )
    accounts(settings).whitelist("10.0.0.5")
    server = serve(settings, {"RESPONSE_TIMEOUT": SHORT})
    with ThreadPoolExecutor(max_workers=2) as pool:
        native = pool.submit(stream, server.url, "/api/chat", chat_body())
        sse = pool.submit(stream, server.url, "/v1/chat/completions", chat_body(stream=True))
        native_time, native_body = native.result()
        sse_time, sse_body = sse.result()
    assert native_time > 2.5 * SHORT and sse_time > 2.5 * SHORT
    lines = ndjson(native_body)
    assert len(lines) == TOKENS + 1 and lines[-1]["done"] is True
    assert not any("error" in line for line in lines)
    events = sse_events(sse_body)
    assert events[-1] == "data: [DONE]"
    content = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1] if "choices" in e]
    assert sum(1 for c in content if c) == TOKENS


def test_an_early_headers_stream_outlives_quarts_response_timeout(gw_settings, accounts, serve):
    settings = gw_settings()
    accounts(settings).whitelist("10.0.0.5")
    server = serve(settings, {"RESPONSE_TIMEOUT": SHORT})
    hold = {"X-Forwarded-For": "10.0.0.5", "X-Sim-First-Token-Delay": "1.5"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocker = pool.submit(
            httpx.post, server.url + "/api/chat", json=chat_body(stream=False), headers=hold
        )
        server.wait_for(lambda s: s["active_requests"] == 1)
        response = httpx.post(
            server.url + "/api/chat", json=chat_body(), headers=PACED | {"X-Sim-Tokens": "3"}
        )
        assert blocker.result().status_code == 200
    assert "X-Seadragon-Queue-Wait" not in response.headers  # it went out early
    assert ndjson(response.content)[-1]["done"] is True
