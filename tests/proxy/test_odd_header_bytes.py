"""Odd bytes are not errors (docs/contract.md §16): a request header value that is not ASCII.

Raw sockets send latin-1 bytes in a custom header and in ``User-Agent`` to the
real gateway (``asgi.py`` under uvicorn, both apps), on a queued route, an
unqueued one, the admin app and ``/health``: each is answered as without them,
never a 500, and the request's row keeps its real status.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import settings_env
from tests.live import LiveServer
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # a real server in a subprocess

ADMIN_PASSWORD = "odd-bytes-password-1"
ODD = [
    b"X-Note: caf\xe9 cr\xe8me",  # latin-1 bytes in a custom header value
    b"User-Agent: Mozilla/5.0 (\xc0\xff\x80)",  # and in User-Agent, with bytes no UTF-8 allows
]


@pytest.fixture(scope="module")
def live(tmp_path_factory, sim_server):
    env = settings_env(
        tmp_path_factory.mktemp("odd"), admin_password=ADMIN_PASSWORD, ollama_urls=f"{sim_server.url}=2"
    )
    server = LiveServer(env).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_token(live) -> str:
    token = httpx.post(
        live.url + "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


@pytest.fixture(scope="module")
def key(live, admin_token) -> str:
    created = httpx.post(
        live.url + "/api/admin/apikeys",
        json={"name": "odd", "priority": 5},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return created.json()["key"]


def raw_request(
    port: int, method: str, path: str, headers: list[bytes], body: bytes = b""
) -> tuple[int, bytes]:
    """Send one request with raw header bytes; its status and body (the server closes after it)."""
    head = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(), b"Connection: close"]
    if body:
        head += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head + headers) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_a_queued_generation_with_latin1_headers_is_served_and_forwarded_as_received(live, key, sim_server):
    text = "odd bytes " + key[-6:]
    body = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": text}], "stream": False})
    status, answer = raw_request(
        live.port, "POST", "/api/chat", [f"X-API-Key: {key}".encode(), *ODD], body.encode()
    )
    assert status == 200, answer
    (seen,) = [e for e in sim_server.entries("/api/chat") if text in json.dumps(e.get("body"))]
    assert seen["headers"]["x-note"] == "caf\xe9 cr\xe8me"  # the same bytes, read as latin-1
    assert seen["headers"]["user-agent"] == "Mozilla/5.0 (\xc0\xff\x80)"


@pytest.mark.parametrize("path", ["/api/tags", "/api/version", "/v1/models", "/health", "/"])
def test_unqueued_routes_with_latin1_headers_are_served(live, key, path):
    status, answer = raw_request(live.port, "GET", path, [f"X-API-Key: {key}".encode(), *ODD])
    assert status == 200, answer


def test_the_admin_app_with_latin1_headers_answers(live, admin_token):
    bearer = f"Authorization: Bearer {admin_token}".encode()
    assert raw_request(live.port, "GET", "/api/admin/apikeys", [bearer, *ODD])[0] == 200
    assert raw_request(live.port, "GET", "/auth/login", ODD)[0] == 200
    login = json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode()
    assert raw_request(live.port, "POST", "/auth/token", ODD, login)[0] == 200


def test_the_row_of_a_request_with_latin1_headers_is_its_real_status(live, key, admin_token):
    status, _ = raw_request(live.port, "GET", "/api/ps", [f"X-API-Key: {key}".encode(), *ODD])
    assert status == 200

    def logged():
        page = httpx.get(
            live.url + "/api/admin/requests",
            params={"endpoint": "/api/ps"},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        ).json()
        return page["requests"] or None

    rows = wait_until(logged, timeout=10)
    assert {row["status"] for row in rows} == {200}
