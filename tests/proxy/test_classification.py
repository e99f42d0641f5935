"""Who is asking (docs/contract.md §4) as the gateway applies it: keys, whitelisted IPs, logins, else 401."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import Headers

from tests.proxy.fake_ollama import chat_request
from tests.proxy.support import cookie_header

KEYLESS_IP = "10.9.9.9"
WHITELISTED_IP = "10.0.0.5"


@pytest.fixture
async def world(settings_factory, make_gateway, accounts, admin_app):
    """A gateway on a mock Ollama with a key, a whitelisted IP, a user and an admin."""
    settings = settings_factory(WEBCHAT_PRIORITY=3, DIRECT_PRIORITY=1)
    db = accounts(settings)
    world = type("World", (), {})()
    world.key = db.key(priority=7)
    world.entry = db.whitelist(WHITELISTED_IP, priority=4)
    world.alice = db.user("alice")
    world.root = db.user("root", admin=True)
    world.db = db
    world.admin = admin_app(settings)
    world.client = await make_gateway(settings)
    return world


async def test_a_key_in_x_api_key_makes_a_custom_app(world):
    response = await chat_request(world.client, KEYLESS_IP, headers={"X-API-Key": world.key})
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "custom_app"


async def test_a_key_as_bearer_behaves_the_same(world):
    response = await chat_request(world.client, KEYLESS_IP, headers={"Authorization": f"Bearer {world.key}"})
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "custom_app"


async def test_the_same_key_in_both_headers_is_fine(world):
    headers = {"X-API-Key": world.key, "Authorization": f"Bearer {world.key}"}
    response = await chat_request(world.client, KEYLESS_IP, headers=headers)
    assert response.status_code == 200


async def test_two_different_keys_are_a_400(world, fake_ollama):
    other = world.db.key(name="other")
    headers = {"X-API-Key": world.key, "Authorization": f"Bearer {other}"}
    response = await chat_request(world.client, KEYLESS_IP, headers=headers)
    assert response.status_code == 400
    assert "error" in await response.get_json()
    assert fake_ollama.paths() == []


@pytest.mark.parametrize("key", ["sdk_" + "x" * 43, "sdk_short", "not-a-key"])
async def test_a_bad_key_is_401_even_from_a_whitelisted_ip(world, fake_ollama, key):
    response = await chat_request(world.client, WHITELISTED_IP, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert fake_ollama.paths() == []


async def test_a_revoked_key_is_refused_once_the_cache_refreshes(world):
    world.db.revoke_key(world.key)
    await world.client.app.extensions["seadragon_gateway"].cache.refresh()
    response = await chat_request(world.client, KEYLESS_IP, headers={"X-API-Key": world.key})
    assert response.status_code == 401


async def test_a_whitelisted_ip_is_direct_api(world):
    response = await chat_request(world.client, WHITELISTED_IP)
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "direct_api"


async def test_a_whitelisted_cidr_admits_its_hosts(world):
    world.db.whitelist("192.168.7.0/24")
    await world.client.app.extensions["seadragon_gateway"].cache.refresh()
    assert (await chat_request(world.client, "192.168.7.200")).status_code == 200
    assert (await chat_request(world.client, "192.168.8.1")).status_code == 401


async def test_an_ipv4_mapped_ipv6_peer_matches_its_ipv4_entry(world):
    response = await chat_request(world.client, "::ffff:" + WHITELISTED_IP)
    assert response.headers["X-Seadragon-Source"] == "direct_api"


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(world):
    headers = {"X-Forwarded-For": WHITELISTED_IP}
    response = await chat_request(world.client, KEYLESS_IP, headers=headers)
    assert response.status_code == 401


async def test_x_forwarded_for_from_a_trusted_proxy_is_believed(settings_factory, make_gateway, accounts):
    settings = settings_factory(TRUSTED_PROXIES="10.1.0.0/16")
    accounts(settings).whitelist(WHITELISTED_IP)
    client = await make_gateway(settings)
    # The rightmost hop that is not a trusted proxy is the client; what it claims to its left is not.
    spoofed = {"X-Forwarded-For": f"{WHITELISTED_IP}, 10.9.9.9, 10.1.0.7"}
    assert (await chat_request(client, "10.1.0.2", headers=spoofed)).status_code == 401
    honest = {"X-Forwarded-For": f"10.9.9.9, {WHITELISTED_IP}, 10.1.0.7"}
    response = await chat_request(client, "10.1.0.2", headers=honest)
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "direct_api"


async def test_x_forwarded_for_split_over_several_header_lines_reads_as_one_list(
    settings_factory, make_gateway, accounts
):
    settings = settings_factory(TRUSTED_PROXIES="10.1.0.0/16")
    accounts(settings).whitelist(WHITELISTED_IP)
    client = await make_gateway(settings)
    # Two proxies, each adding its own line: together "10.9.9.9, <whitelisted>, 10.1.0.7".
    lines = Headers([("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-For", f"{WHITELISTED_IP}, 10.1.0.7")])
    response = await chat_request(client, "10.1.0.2", headers=lines)
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "direct_api"
    # The same hops in the other order put an unlisted address nearest the proxies.
    swapped = Headers([("X-Forwarded-For", f"{WHITELISTED_IP}, 10.1.0.7"), ("X-Forwarded-For", "10.9.9.9")])
    assert (await chat_request(client, "10.1.0.2", headers=swapped)).status_code == 401


async def test_a_logged_in_user_is_web_chat(world):
    cookie = world.admin.session_cookie("alice")
    response = await chat_request(world.client, KEYLESS_IP, headers=cookie_header(cookie))
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "web_chat"


async def test_a_user_access_token_is_web_chat(world):
    token = world.admin.access_token("alice")
    response = await chat_request(world.client, KEYLESS_IP, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "web_chat"


async def test_ending_a_users_sessions_ends_cookie_and_token(world):
    cookie = world.admin.session_cookie("alice")
    token = world.admin.access_token("alice")
    world.db.end_sessions(world.alice)
    await world.client.app.extensions["seadragon_gateway"].cache.refresh()
    by_cookie = await chat_request(world.client, KEYLESS_IP, headers=cookie_header(cookie))
    by_token = await chat_request(world.client, KEYLESS_IP, headers={"Authorization": f"Bearer {token}"})
    assert by_cookie.status_code == 401
    assert by_token.status_code == 401


async def test_a_forged_cookie_or_unknown_token_is_refused(world):
    forged = await chat_request(
        world.client, KEYLESS_IP, headers=cookie_header("eyJfdXNlcl9pZCI6IjE6MSJ9.x.y")
    )
    unknown = await chat_request(world.client, KEYLESS_IP, headers={"Authorization": "Bearer sda_nope"})
    assert forged.status_code == 401
    assert unknown.status_code == 401


async def test_nobody_gets_401(world, fake_ollama):
    response = await chat_request(world.client, KEYLESS_IP)
    assert response.status_code == 401
    assert (await response.get_json())["error"]
    assert fake_ollama.paths() == []


async def test_a_keyless_request_from_an_unlisted_origin_is_403(world):
    response = await chat_request(world.client, WHITELISTED_IP, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403


async def test_a_keyed_request_from_any_origin_is_served(world):
    headers = {"Origin": "https://evil.example", "X-API-Key": world.key}
    response = await chat_request(world.client, KEYLESS_IP, headers=headers)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_key_use_is_written_in_a_batch_not_per_request(world):
    assert world.db.key_last_used(world.key) is None
    await chat_request(world.client, KEYLESS_IP, headers={"X-API-Key": world.key})
    assert world.db.key_last_used(world.key) is None
    await world.client.app.extensions["seadragon_gateway"].cache.flush_usage()
    assert world.db.key_last_used(world.key) is not None
