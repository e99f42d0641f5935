"""On the wire: path variants never reach a forbidden endpoint; client secrets never reach Ollama."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.proxy.support import chat_body

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

PULL = json.dumps({"model": "llama3.2", "stream": False})


@pytest.fixture
def world(gw_settings, accounts, serve):
    """A gateway on the simulator, an ordinary key, and 10.0.0.5 whitelisted."""
    settings = gw_settings()
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    return serve(settings), db.key()


def raw_request(port: int, method: str, target: str, headers: dict[str, str], body: str = "") -> int:
    """Send a request line exactly as written (no client-side normalisation); the status code."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]  # a name Ollama allows
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}", "", body]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1])


def forwarded(sim) -> dict[str, int]:
    """What reached the simulator, by path, besides the gateway's health checks."""
    return {path: n for path, n in sim.stats()["requests"].items() if path not in ("/api/tags", "/api/ps")}


VARIANTS = [
    "/api//pull",
    "//api/pull",
    "/API/PULL",
    "/api/Pull",
    "/api/pull/",
    "/api/./pull",
    "/api/%2e%2e/pull",
    "/api/%2E%2E/api/pull",
    "/v1/../api/pull",
    "/v1/%2e%2e/api/pull",
    "/api/ollama/../pull",
    "/api/ollama//pull",
    "/api/chat/../pull",
    "/api/pull%00",
    "/api/pull;x=1",
    "/api/%2Fpull",
    "/api/%70ull",
    "/api/ollama/pull",
    "/api/pull?stream=false",
]


@pytest.mark.parametrize("target", VARIANTS)
def test_no_path_variant_lets_a_key_pull_a_model(world, sim, target):
    server, key = world
    status = raw_request(server.port, "POST", target, {"X-API-Key": key}, PULL)
    assert status in (400, 403, 404)
    assert forwarded(sim) == {}


@pytest.mark.parametrize("target", ["/api//pull", "/v1/../api/pull", "/api/%2e%2e/pull", "/API/PULL"])
def test_a_path_variant_is_not_an_alias_even_for_a_whitelisted_ip(world, sim, target):
    server, _ = world
    assert raw_request(server.port, "POST", target, {"X-Forwarded-For": "10.0.0.5"}, PULL) == 404
    assert forwarded(sim) == {}
    assert raw_request(server.port, "POST", "/api/pull", {"X-Forwarded-For": "10.0.0.5"}, PULL) == 200
    assert forwarded(sim) == {"/api/pull": 1}


def test_unknown_api_paths_are_never_forwarded(world, sim):
    server, key = world
    for path in ("/api/unknown", "/api/ollama/unknown", "/v1/files", "/v1/audio/speech"):
        response = httpx.post(server.url + path, json={}, headers={"X-API-Key": key})
        assert response.status_code == 404
        assert response.json() == {"error": "not found"}
    assert forwarded(sim) == {}


def test_the_clients_host_credentials_and_cookies_never_reach_ollama(world, sim):
    server, key = world
    headers = {
        "Host": "gateway.example",
        "Authorization": f"Bearer {key}",
        "X-API-Key": key,
        "Cookie": "seadragon_session=secret; theme=dark",
        "Origin": "https://chat.seadragoninkmortal.com",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "hop-by-hop by Connection",
        "X-Client-Trace": "kept",
    }
    response = httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=headers)
    assert response.status_code == 200
    [entry] = sim.entries("/api/chat")
    received = {name.lower(): value for name, value in entry["headers"].items()}
    for name in ("authorization", "x-api-key", "cookie", "origin", "x-hop"):
        assert name not in received
    assert received["host"] == sim.url.removeprefix("http://")
    assert received["x-client-trace"] == "kept"
    assert entry["body"] == chat_body(stream=False)
