"""When Ollama fails (docs/contract.md §5): 502/503/504 before the first byte, in-band errors after it."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from simulator import serve_in_thread
from tests.proxy.support import chat_body, ndjson, sse_events

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

DIRECT = {"X-Forwarded-For": "10.0.0.5"}


def post(server, body: dict, fault: str = "", path: str = "/api/chat", **headers: str) -> httpx.Response:
    """A request from the whitelisted IP, with a simulator fault when given."""
    extra = {"X-Sim-Fault": fault} if fault else {}
    return httpx.post(server.url + path, json=body, headers={**DIRECT, **extra, **headers}, timeout=30)


def test_a_backend_that_refuses_connections_is_502_then_out_of_rotation(settings_factory, accounts, serve):
    own_sim = serve_in_thread()
    settings = settings_factory(OLLAMA_URLS=f"{own_sim.url}=1", TRUSTED_PROXIES="127.0.0.1")
    accounts(settings).whitelist("10.0.0.5")
    server = serve(settings)
    own_sim.stop()
    refused = post(server, chat_body(stream=False))
    assert refused.status_code == 502
    assert "connect" in refused.json()["error"]
    assert server.snapshot()["active_requests"] == 0
    after = post(server, chat_body(stream=False))
    assert after.status_code == 503
    assert int(after.headers["Retry-After"]) >= 1
    assert httpx.get(server.url + "/health").json() == {"status": "degraded"}  # anonymous: up or down only


def test_ollamas_500_is_a_502_json_error(gateway):
    response = post(gateway(), chat_body(stream=False), "status=500,message=CUDA out of memory")
    assert response.status_code == 502
    assert "CUDA out of memory" in response.json()["error"]


def test_ollamas_503_is_a_503_with_retry_after(gateway):
    response = post(gateway(), chat_body(stream=False), "status=503")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]


def test_ollamas_404_for_an_unknown_model_passes_through(gateway, sim):
    direct = httpx.post(sim.url + "/api/chat", json=chat_body("no-such-model", stream=False))
    relayed = post(gateway(), chat_body("no-such-model", stream=False))
    assert relayed.status_code == direct.status_code == 404
    assert relayed.content == direct.content


def test_no_first_byte_in_time_is_504_and_upstream_is_closed(gateway, sim):
    server = gateway(FIRST_BYTE_TIMEOUT="0.5")
    started = time.monotonic()
    response = post(server, chat_body(), "stall_headers=5")
    assert response.status_code == 504
    assert 0.45 < time.monotonic() - started < 2
    assert response.json()["error"]
    sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=1.0)
    assert server.snapshot()["active_requests"] == 0


def test_a_stream_that_stalls_ends_with_an_in_band_error_after_idle_timeout(gateway, sim):
    server = gateway(IDLE_TIMEOUT="0.5")
    response = post(server, chat_body(), "stall_mid=5,after=2")
    assert response.status_code == 200
    lines = ndjson(response.content)
    assert [line.get("done") for line in lines[:-1]] == [False, False]
    assert "silent" in lines[-1]["error"] and "done" not in lines[-1]
    sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=1.0)


def test_a_dropped_native_stream_ends_with_an_error_line_and_no_fake_done(gateway):
    response = post(gateway(), chat_body(), "drop_mid,after=3")
    assert response.status_code == 200
    assert response.content.endswith(b"\n")
    lines = ndjson(response.content)
    assert len(lines) == 4
    assert not any(line.get("done") for line in lines)
    assert lines[-1] == {"error": lines[-1]["error"]} and "dropped" in lines[-1]["error"]


def test_a_dropped_sse_stream_ends_with_an_error_event_and_no_done(gateway):
    response = post(gateway(), chat_body(stream=True), "drop_mid,after=2", path="/v1/chat/completions")
    assert response.status_code == 200
    events = sse_events(response.content)
    assert "data: [DONE]" not in events
    assert events[-1].startswith("data: ")
    error = json.loads(events[-1][len("data: ") :])
    assert set(error) == {"error"} and error["error"]["message"]


def test_an_in_band_error_from_ollama_passes_through_unchanged(gateway, sim):
    direct = httpx.post(sim.url + "/api/chat", json=chat_body(), headers={"X-Sim-Fault": "error_mid,after=2"})
    relayed = post(gateway(), chat_body(), "error_mid,after=2")
    assert relayed.status_code == 200
    assert ndjson(relayed.content)[-1] == ndjson(direct.content)[-1]
    assert "error" in ndjson(relayed.content)[-1]


def test_a_backend_dropping_before_headers_is_502(gateway):
    response = post(gateway(), chat_body(stream=False), "drop_headers")
    assert response.status_code == 502
    assert response.json()["error"]
