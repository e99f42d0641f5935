"""Hostile input through the real server: deep JSON and repeated credential headers get 400, never 500."""

from __future__ import annotations

import httpx
import pytest

from tests.proxy.live_gateway import ADMIN_PASSWORD

pytestmark = pytest.mark.costly  # a real `python asgi.py`

DEEP_ARRAYS = "[" * 1000 + "]" * 1000
DEEP_OBJECTS = '{"a":' * 65 + "1" + "}" * 65


def admin_token(server) -> str:
    """An admin access token from POST /auth/token."""
    login = httpx.post(server.url + "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    return login.json()["access_token"]


def test_json_nested_deeper_than_64_levels_is_a_400_on_the_gateway(door_server, door_key):
    headers = {"X-API-Key": door_key, "Content-Type": "application/json"}
    for body in (DEEP_ARRAYS, DEEP_OBJECTS, '{"model": "llama3.2:latest", "x": ' + DEEP_ARRAYS + "}"):
        response = httpx.post(door_server.url + "/api/generate", content=body, headers=headers, timeout=10)
        assert response.status_code == 400, response.text
        assert "nested deeper than 64 levels" in response.json()["error"]
    start = '{"model": "llama3.2:latest", "prompt": "hi", "stream": false, "x": '
    nested_64 = start + "[" * 63 + "]" * 63 + "}"
    response = httpx.post(door_server.url + "/api/generate", content=nested_64, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def test_json_nested_too_deep_is_a_400_on_the_admin_api(door_server):
    headers = {"Authorization": f"Bearer {admin_token(door_server)}", "Content-Type": "application/json"}
    for path in ("/api/admin/apikeys", "/api/admin/whitelist"):
        for body in (DEEP_ARRAYS, DEEP_OBJECTS):
            response = httpx.post(door_server.url + path, content=body, headers=headers, timeout=10)
            assert response.status_code == 400, response.text
            assert response.json() == {"error": "JSON nested deeper than 64 levels"}
    response = httpx.post(door_server.url + "/auth/token", content=DEEP_ARRAYS, timeout=10)
    assert response.status_code == 400


def test_a_credential_header_given_twice_is_a_400(door_server, door_key):
    chat = {"model": "llama3.2:latest", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    cases = [
        [("X-API-Key", door_key), ("X-API-Key", "sk-wrong")],
        [("X-API-Key", door_key), ("X-API-Key", door_key)],
        [("Authorization", f"Bearer {door_key}"), ("Authorization", "Bearer other")],
    ]
    for headers in cases:
        response = httpx.post(door_server.url + "/api/chat", json=chat, headers=headers, timeout=10)
        assert response.status_code == 400, response.text
        assert "given more than once" in response.json()["error"]
    token = admin_token(door_server)
    twice = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer someone-else")]
    response = httpx.get(door_server.url + "/api/admin/apikeys", headers=twice, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "the Authorization header is given more than once"}
    once = httpx.get(door_server.url + "/api/admin/apikeys", headers={"Authorization": f"Bearer {token}"})
    assert once.status_code == 200
