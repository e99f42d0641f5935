"""The queue against a real gateway and the simulator (docs/contract.md §5).

Order, limits, leaving, early headers.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.proxy.queueing import DIRECT, OUTSIDE, occupy, post, submit
from tests.proxy.support import QUESTION, chat_body, cookie_header, log_rows, ndjson, sse_events
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and fills its queue


@pytest.fixture
def queue_world(gw_settings, accounts, serve, admin_app):
    """Make a one-slot gateway with a whitelisted IP, a key (priority 2) and a chat user."""

    def make(**overrides):
        settings = gw_settings(**overrides)
        db = accounts(settings)
        db.whitelist("10.0.0.5")
        key = db.key(priority=2)
        db.user("alice")
        cookie = cookie_header(admin_app(settings).session_cookie("alice"))
        return serve(settings), key, cookie

    return make


def test_with_one_slot_direct_goes_before_key_before_web_chat(queue_world, pool, sim):
    server, key, cookie = queue_world()
    blocker = occupy(pool, server, sim)
    waiting = []
    for who, headers in [
        ("web_chat", {**OUTSIDE, **cookie}),
        ("custom_app", {**OUTSIDE, "X-API-Key": key}),
        ("direct_api", DIRECT),
    ]:
        waiting.append(submit(pool, server, {**headers, "X-Who": who}))
        queued = len(waiting)
        server.wait_for(lambda s, n=queued: s["queue_length"] == n)
    assert blocker.result().status_code == 200
    responses = [future.result() for future in waiting]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.headers["X-Seadragon-Source"] for r in responses] == ["web_chat", "custom_app", "direct_api"]
    order = [entry["headers"].get("x-who") for entry in sim.entries("/api/chat")]
    assert order == ["blocker", "direct_api", "custom_app", "web_chat"]
    assert sim.stats()["max_active_inference"] == 1  # the gateway, not Ollama, decided the order


def test_a_full_queue_is_503_with_retry_after(queue_world, pool, sim):
    server, key, _ = queue_world(MAX_QUEUE=1)
    blocker = occupy(pool, server, sim)
    queued = submit(pool, server, DIRECT)
    server.wait_for(lambda s: s["queue_length"] == 1)
    refused = post(server, DIRECT)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "error" in refused.json()
    assert blocker.result().status_code == queued.result().status_code == 200


def test_waiting_past_queue_timeout_is_503(queue_world, pool, sim):
    server, _, _ = queue_world(QUEUE_TIMEOUT="0.3")
    blocker = occupy(pool, server, sim)
    started = time.monotonic()
    refused = post(server, DIRECT)
    assert refused.status_code == 503
    assert 0.25 < time.monotonic() - started < 1.4
    assert "queue" in refused.json()["error"]
    blocker.result()
    assert len(sim.entries("/api/chat")) == 1


def test_a_client_that_leaves_while_queued_is_never_sent_upstream(queue_world, pool, sim):
    server, _, _ = queue_world()
    blocker = occupy(pool, server, sim)
    with pytest.raises(httpx.ReadTimeout):
        post(server, {**DIRECT, "X-Who": "impatient"}, timeout=0.4)
    left = time.monotonic()
    server.wait_for(lambda s: s["queue_length"] == 0, timeout=1.0)
    assert time.monotonic() - left < 1.0
    assert blocker.result().status_code == 200
    after = post(server, {**DIRECT, "X-Who": "next"})
    assert after.status_code == 200
    assert [e["headers"].get("x-who") for e in sim.entries("/api/chat")] == ["blocker", "next"]
    server.stop()
    rows = sorted((row.status, row.stage or "") for row in log_rows(server.settings))
    assert rows == [(200, ""), (200, ""), (499, "queued")]


def test_a_client_that_leaves_mid_stream_frees_the_slot_and_closes_upstream(queue_world, sim):
    server, _, _ = queue_world()
    slow = {**DIRECT, "X-Sim-Delay": "0.2", "X-Sim-Tokens": "100"}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + "/api/chat", json=chat_body(), headers=slow) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["done"] is False
            assert json.loads(next(lines))["done"] is False
        left = time.monotonic()
    sim.wait_for(lambda s: s["outcomes"].get("cancelled") == 1, timeout=1.0)
    server.wait_for(lambda s: s["active_requests"] == 0, timeout=1.0)
    assert time.monotonic() - left < 1.0
    assert post(server, DIRECT).status_code == 200
    server.stop()
    assert [(row.status, row.stage) for row in log_rows(server.settings)] == [(499, "streaming"), (200, None)]


def test_a_waiting_sse_stream_hears_its_queue_position(queue_world, pool, sim):
    server, key, _ = queue_world()
    blocker = occupy(pool, server, sim)
    headers = {**OUTSIDE, "X-API-Key": key}
    with httpx.Client(timeout=30) as client:
        body = chat_body(stream=True)
        with client.stream(
            "POST", server.url + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            assert server.snapshot()["queue_length"] == 1  # the headers came while it still waited
            assert response.headers["content-type"].startswith("text/event-stream")
            text = response.read().decode()
    events = sse_events(text)
    assert events[0] == ": queued position=1"
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[1:])
    assert blocker.result().status_code == 200


def test_the_openai_client_ignores_queue_comments(queue_world, pool, sim):
    server, key, _ = queue_world()
    blocker = occupy(pool, server, sim)
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        chunks = list(client.chat.completions.create(model="llama3.2", messages=QUESTION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    blocker.result()


def test_a_waiting_native_stream_gets_its_headers_early(queue_world, pool, sim):
    server, _, _ = queue_world()
    blocker = occupy(pool, server, sim)
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + "/api/chat", json=chat_body(), headers=DIRECT) as response:
            assert response.status_code == 200
            assert server.snapshot()["queue_length"] == 1
            assert response.headers["content-type"] == "application/x-ndjson"
            assert "X-Seadragon-Queue-Wait" not in response.headers
            assert response.headers["X-Seadragon-Source"] == "direct_api"
            parts = ndjson(response.read())
    assert parts[-1]["done"] is True
    assert blocker.result().status_code == 200


def test_without_early_headers_a_native_stream_reports_its_wait(queue_world, pool, sim):
    server, _, _ = queue_world(EARLY_HEADERS="false")
    blocker = occupy(pool, server, sim)
    response = post(server, DIRECT, chat_body())
    assert response.status_code == 200
    assert int(response.headers["X-Seadragon-Queue-Wait"]) >= 500
    assert ndjson(response.content)[-1]["done"] is True
    blocker.result()


def test_a_queue_error_after_early_headers_is_an_in_band_error_line(queue_world, pool, sim):
    server, _, _ = queue_world(QUEUE_TIMEOUT="0.4")
    blocker = occupy(pool, server, sim)
    response = post(server, DIRECT, chat_body())
    assert response.status_code == 200
    lines = ndjson(response.content)
    assert len(lines) == 1 and "queue" in lines[0]["error"]
    blocker.result()


def test_an_unknown_model_behind_early_headers_is_an_in_band_error(queue_world, pool, sim):
    server, _, _ = queue_world()
    blocker = occupy(pool, server, sim)
    response = post(server, DIRECT, chat_body("no-such-model"))
    assert response.status_code == 200
    [line] = ndjson(response.content)
    assert "not found" in line["error"]
    blocker.result()


def test_a_slot_is_held_until_the_stream_is_fully_sent(queue_world, sim):
    server, _, _ = queue_world()
    paced = {**DIRECT, "X-Sim-Delay": "0.05", "X-Sim-Tokens": "10"}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + "/api/chat", json=chat_body(), headers=paced) as response:
            lines = response.iter_lines()
            next(lines)
            assert server.snapshot()["active_requests"] == 1
            assert json.loads(list(lines)[-1])["done"] is True
    wait_until(lambda: server.snapshot()["active_requests"] == 0, timeout=1.0)


@pytest.mark.parametrize(
    ("path", "body"), [("/api/chat", chat_body()), ("/v1/chat/completions", chat_body(stream=True))]
)
def test_a_client_that_leaves_after_early_headers_is_removed_from_the_queue(
    queue_world, pool, sim, path, body
):
    server, _, _ = queue_world()
    blocker = occupy(pool, server, sim)
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + path, json=body, headers=DIRECT) as response:
            assert response.status_code == 200
            assert server.snapshot()["queue_length"] == 1
    left = time.monotonic()
    server.wait_for(lambda s: s["queue_length"] == 0, timeout=1.0)
    assert time.monotonic() - left < 1.0
    assert blocker.result().status_code == 200
    assert [e["path"] for e in sim.stats()["log"] if e["path"] not in ("/api/tags", "/api/ps")] == [
        "/api/chat"
    ]  # the blocker
