"""DNS rebinding: a keyless request from a whitelisted address must name this server (docs/contract.md §16).

A page on ``evil.example`` rebound to the gateway's address makes a browser on a whitelisted
machine send ``Host: evil.example`` and no credential. Such requests are 403 and never forwarded;
the server's own names, IP literals and Ollama's local names pass; key holders and users are
unaffected. Through the gateway's HTTP surface (and one served on a real socket).
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.proxy.fake_ollama import call

WHITELISTED_IP = "10.0.0.5"
PUBLIC = "https://gpu.example.com/ollama"
FOREIGN = [
    "evil.example",
    "evil.example:11434",
    "gpu.example.com.evil.example",
    "localhost.evil.example",
]
OWN = [
    "localhost",
    "localhost:8080",
    "LOCALHOST.",
    "127.0.0.1:8080",
    "[::1]:11434",
    "10.0.0.9",  # an address cannot be rebound
    "[2001:db8::1]",
    "gpu.example.com",  # PUBLIC_URL's host
    "gpu.example.com:443",
    "box.local",  # Ollama's local names
    "api.internal:80",
    "x.localhost",
    socket.gethostname(),
]


@pytest.fixture
async def gateway(settings_factory, accounts, make_gateway, fake_ollama):
    settings = settings_factory(PUBLIC_URL=PUBLIC, HOST="0.0.0.0")
    made = accounts(settings)
    made.whitelist(WHITELISTED_IP)
    made.user("alice")
    key = made.key("app")
    client = await make_gateway(settings)
    return client, key, settings


@pytest.mark.parametrize("host", FOREIGN)
async def test_a_keyless_whitelisted_request_naming_another_server_is_403(gateway, fake_ollama, host):
    client, _, _ = gateway
    for method, path, body in (
        ("POST", "/api/chat", {"model": "llama3.2", "messages": []}),
        ("GET", "/api/tags", None),
    ):
        response = await call(client, method, path, WHITELISTED_IP, headers={"Host": host}, json=body)
        assert response.status_code == 403
        error = (await response.get_json())["error"]
        assert "does not name this server" in error
    assert fake_ollama.paths() == []


@pytest.mark.parametrize("host", OWN)
async def test_the_servers_own_names_and_addresses_pass(gateway, fake_ollama, host):
    client, _, _ = gateway
    response = await call(client, "GET", "/api/tags", WHITELISTED_IP, headers={"Host": host})
    assert response.status_code == 200, await response.get_data(as_text=True)


async def test_key_holders_and_users_are_unaffected(gateway, admin_app):
    client, key, settings = gateway
    token = admin_app(settings).access_token("alice")
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {token}"}):
        response = await call(
            client, "GET", "/api/tags", WHITELISTED_IP, headers={"Host": "evil.example", **headers}
        )
        assert response.status_code == 200
        response = await call(
            client, "GET", "/api/tags", "10.9.9.9", headers={"Host": "evil.example", **headers}
        )
        assert response.status_code == 200


@pytest.mark.costly  # a served gateway
def test_a_served_gateway_refuses_a_rebound_host(gw_settings, accounts, serve):
    settings = gw_settings()
    accounts(settings).whitelist("127.0.0.1")
    server = serve(settings)
    refused = httpx.get(
        server.url + "/api/tags", headers={"Host": f"attacker.example:{server.port}"}, timeout=10
    )
    assert refused.status_code == 403
    assert httpx.get(server.url + "/api/tags", timeout=10).status_code == 200  # Host: 127.0.0.1:<port>
    named = httpx.get(server.url + "/api/tags", headers={"Host": f"localhost:{server.port}"}, timeout=10)
    assert named.status_code == 200
