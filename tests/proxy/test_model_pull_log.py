"""A model pull, push or create (unqueued, streamed) is logged as it really ended (docs/contract.md §5)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.proxy.support import log_rows, ndjson

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

DIRECT = {"X-Forwarded-For": "10.0.0.5"}  # whitelisted: may manage models


def pull(server, fault: str = "", model: str = "qwen2.5:0.5b", **headers: str) -> httpx.Response:
    """POST /api/pull from the whitelisted IP, with a simulator fault when given."""
    extra = {"X-Sim-Fault": fault} if fault else {}
    body = {"model": model}
    return httpx.post(server.url + "/api/pull", json=body, headers={**DIRECT, **extra, **headers}, timeout=30)


def row_for(server, endpoint: str):
    """The one request-log row of ``endpoint``, once the server has stopped (the log is flushed)."""
    server.stop()
    rows = [row for row in log_rows(server.settings) if row.endpoint == endpoint]
    assert len(rows) == 1
    return rows[0]


def test_a_pull_that_completes_is_logged_200(gateway):
    server = gateway()
    response = pull(server)
    assert response.status_code == 200
    assert ndjson(response.content)[-1] == {"status": "success"}
    row = row_for(server, "/api/pull")
    assert (row.status, row.stage, row.error) == (200, None, None)


def test_a_pull_whose_backend_drops_mid_stream_is_logged_502(gateway):
    server = gateway()
    response = pull(server, "drop_mid,after=2")
    assert response.status_code == 200  # the headers went out before the break
    assert "dropped" in ndjson(response.content)[-1]["error"]
    row = row_for(server, "/api/pull")
    assert (row.status, row.stage) == (502, "streaming")
    assert "dropped" in row.error


def test_a_push_whose_backend_goes_silent_is_logged_504(gateway):
    server = gateway(IDLE_TIMEOUT="0.5")
    response = httpx.post(
        server.url + "/api/push",
        json={"model": "llama3.2"},
        headers={**DIRECT, "X-Sim-Fault": "stall_mid=5,after=1"},
        timeout=30,
    )
    assert response.status_code == 200
    assert "silent" in ndjson(response.content)[-1]["error"]
    row = row_for(server, "/api/push")
    assert (row.status, row.stage) == (504, "streaming")
    assert "silent" in row.error


def test_a_pull_abandoned_by_its_client_is_logged_499_streaming(gateway, sim):
    server = gateway()
    slow = {**DIRECT, "X-Sim-Delay": "0.3"}
    with httpx.Client(timeout=30) as client:
        body = {"model": "qwen2.5:0.5b"}
        with client.stream("POST", server.url + "/api/pull", json=body, headers=slow) as response:
            assert json.loads(next(response.iter_lines()))["status"] == "pulling manifest"
    sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=2.0)
    row = row_for(server, "/api/pull")
    assert (row.status, row.stage) == (499, "streaming")
