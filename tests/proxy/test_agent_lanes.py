"""Every new route in its lane (docs/contract.md §3): account endpoints, status, blobs, cloud models.

The upstream is the simulator, but for blob digests in every form Ollama accepts
(the simulator checks a real digest): those reach tests/proxy/agent_upstream.py.
"""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import pytest

from tests.proxy.support import log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

WHITELISTED = {"X-Forwarded-For": "10.0.0.5"}
ACCOUNT_CALLS = [
    ("POST", "/api/me", None),
    ("POST", "/api/signout", None),
    ("DELETE", "/api/user/keys/c3NoLWVkMjU1MTkgQUFBQQ", None),
    ("POST", "/api/experimental/web_search", {"query": "ollama"}),
    ("POST", "/api/experimental/web_fetch", {"url": "https://ollama.com"}),
]
HELLO = [{"role": "user", "content": "hi\n!say Hello there"}]


@pytest.fixture
def whitelisted_agents(agents):
    """A gateway on which 10.0.0.5 (``WHITELISTED``) is whitelisted; returns (server, key, settings)."""
    return lambda **overrides: agents(whitelist="10.0.0.5", **overrides)


def held_slot(server, key):
    """Hold the gateway's only slot with a slow stream (5 tokens, 1 s apart); returns the thread to join."""
    body = {
        "model": "llama3.2",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    headers = {"X-API-Key": key, "X-Sim-Delay": "1.0"}
    thread = threading.Thread(
        target=httpx.post,
        args=(server.url + "/v1/messages",),
        kwargs={"json": body, "headers": headers, "timeout": 60},
    )
    thread.start()
    server.wait_for(lambda snap: snap.get("active_requests") == 1, timeout=10)
    return thread


def call(server, method, path, body=None, **headers):
    """One request to the gateway."""
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_CALLS)
def test_account_endpoints_are_refused_to_a_key_holder(agents, sim, method, path, body):
    server, key, _ = agents()
    response = call(server, method, path, body, **{"X-API-Key": key})
    assert response.status_code == 403
    assert "ollama.com account" in response.json()["error"]
    health_checks = ("/api/tags", "/api/ps")
    assert not [entry for entry in sim.entries() if entry["path"] not in health_checks]


def test_account_endpoints_serve_a_whitelisted_ip_without_queueing(whitelisted_agents, sim):
    server, key, _ = whitelisted_agents()
    holder = held_slot(server, key)
    try:
        for method, path, body in ACCOUNT_CALLS:
            direct = httpx.request(method, sim.url + path, json=body, timeout=30)
            started = time.monotonic()
            response = call(server, method, path, body, **WHITELISTED)
            # The simulator is signed out of ollama.com: its refusal passes through as it was.
            assert (response.status_code, response.json()) == (direct.status_code, direct.json())
            assert time.monotonic() - started < 2.5  # the held stream lasts about 5 s
            assert [entry["method"] for entry in sim.entries(path)] == [method, method]
    finally:
        holder.join(30)


@pytest.mark.parametrize("path", ["/api/status", "/api/experimental/model-recommendations"])
def test_status_and_recommendations_take_the_fast_lane(agents, sim, path):
    server, key, _ = agents()
    holder = held_slot(server, key)
    try:
        response = call(server, "GET", path, **{"X-API-Key": key})
        assert response.status_code == 200 and response.json() == httpx.get(sim.url + path).json()
        assert server.snapshot()["active_requests"] == 1  # answered while the only slot is busy
    finally:
        holder.join(30)


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + "ab" * 32, "sha256-" + "ab" * 32, "sha256:" + "AB" * 32, "sha256-" + "aB" * 32],
)
def test_every_blob_digest_form_ollama_accepts_reaches_it(agents, agent_upstream, digest):
    server, _, _ = agents(whitelist="10.0.0.5", OLLAMA_URLS=f"{agent_upstream.url}=1")
    assert call(server, "HEAD", "/api/blobs/" + digest, **WHITELISTED).status_code == 200
    assert agent_upstream.app.last("/api/blobs/" + digest).method == "HEAD"
    upload = httpx.post(server.url + "/api/blobs/" + digest, content=b"GGUF", headers=WHITELISTED, timeout=30)
    assert upload.status_code == 200
    assert agent_upstream.app.last("/api/blobs/" + digest).body == b"GGUF"


def test_a_compressed_blob_upload_is_415(whitelisted_agents, sim):
    server, _, _ = whitelisted_agents()
    path = "/api/blobs/sha256-" + "0" * 64
    headers = {**WHITELISTED, "Content-Encoding": "gzip"}
    response = httpx.post(server.url + path, content=b"x", headers=headers, timeout=30)
    assert response.status_code == 415
    assert not sim.entries(path)


# --- Cloud models -----------------------------------------------------------------------------------


# The simulator answers a cloud model once it is "pulled" (listed), as Ollama does.
CLOUD_PULLED = ["llama3.2:latest", "gpt-oss:120b-cloud"]


def rows_of_model(settings, model, count):
    """The request-log rows of ``model`` once there are ``count`` of them, else None."""
    rows = [row for row in log_rows(settings) if row.model == model]
    return rows if len(rows) == count else None


def cloud_message(server, stream=False, **headers):
    """POST /v1/messages for a cloud model."""
    body = {"model": "gpt-oss:120b-cloud", "max_tokens": 8, "messages": HELLO, "stream": stream}
    return httpx.post(server.url + "/v1/messages", json=body, headers=headers, timeout=30)


def test_cloud_models_are_refused_when_off(whitelisted_agents, sim):
    server, key, _ = whitelisted_agents(CLOUD_MODELS="off")
    for headers in ({"X-API-Key": key}, WHITELISTED):
        response = cloud_message(server, **headers)
        assert response.status_code == 403
        assert response.json()["error"]["message"] == "cloud models are disabled on this gateway"
    response = httpx.post(
        server.url + "/api/chat",
        json={"model": "qwen3-coder:cloud", "messages": HELLO},
        headers={"X-API-Key": key},
    )
    assert response.json() == {"error": "cloud models are disabled on this gateway"}
    assert not sim.entries("/v1/messages") and not sim.entries("/api/chat")


def test_cloud_models_are_for_admins_and_whitelisted_ips_when_admin(whitelisted_agents, sim):
    sim.configure(models=CLOUD_PULLED)
    server, key, _ = whitelisted_agents(CLOUD_MODELS="admin")
    assert cloud_message(server, **{"X-API-Key": key}).status_code == 403
    assert cloud_message(server, **WHITELISTED).status_code == 200


def test_allowed_cloud_requests_never_wait_behind_gpu_work(agents, sim):
    sim.configure(models=CLOUD_PULLED)
    server, key, settings = agents(CLOUD_MODELS="on", METRICS_TOKEN="scrape-me")
    holder = held_slot(server, key)
    try:
        whole = cloud_message(server, **{"X-API-Key": key})
        streamed = cloud_message(server, stream=True, **{"X-API-Key": key})
        assert whole.status_code == streamed.status_code == 200
        assert whole.json()["model"] == "gpt-oss:120b-cloud"
        assert b"message_stop" in streamed.content
        assert whole.headers["X-Seadragon-Queue-Wait"] == "0"
        snapshot = server.snapshot()
        assert snapshot["active_requests"] == 1 and snapshot["queue_length"] == 0
    finally:
        holder.join(30)
    rows = wait_until(lambda: rows_of_model(settings, "gpt-oss:120b-cloud", count=2))
    usage = whole.json()["usage"]
    expected = (200, usage["input_tokens"], usage["output_tokens"])
    assert [(r.status, r.prompt_tokens, r.completion_tokens) for r in rows] == [expected] * 2
    assert {r.backend for r in rows} == {settings.backends[0].url}  # relayed, with no slot granted
    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-me"}).text
    assert 'seadragon_cloud_requests_total{source="custom_app",status="200"} 2.0' in metrics


def test_a_queued_anthropic_stream_hears_its_position_and_the_sdk_reads_through(agents):
    server, key, _ = agents()
    holder = held_slot(server, key)
    body = {"model": "llama3.2", "max_tokens": 8, "messages": HELLO, "stream": True}
    try:
        waiting = httpx.post(server.url + "/v1/messages", json=body, headers={"X-API-Key": key}, timeout=60)
    finally:
        holder.join(30)
    events = waiting.content.decode().split("\n\n")
    assert events[0] == ": queued position=1"
    assert events[-2].startswith("event: message_stop")
    holder = held_slot(server, key)
    try:
        with anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0) as client:
            with client.messages.stream(model="llama3.2", max_tokens=8, messages=HELLO) as stream:
                assert "".join(stream.text_stream) == "Hello there"
    finally:
        holder.join(30)
