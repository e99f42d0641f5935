"""The proxy's HTTP surface (docs/contract.md §3).

What is refused, what reaches Ollama, and how errors look.
"""

from __future__ import annotations

import httpx
import pytest

from tests.proxy.fake_ollama import body_of, call, chat_request
from tests.proxy.support import chat_body, cookie_header

KEYLESS_IP = "10.9.9.9"
WHITELISTED_IP = "10.0.0.5"
ALLOWED_ORIGIN = "https://chat.seadragoninkmortal.com"


@pytest.fixture
async def world(settings_factory, make_gateway, accounts, admin_app):
    """A gateway on the in-memory Ollama with a key, a whitelisted IP, a user and an admin."""
    settings = settings_factory(MAX_BODY="2KiB")
    db = accounts(settings)
    world = type("World", (), {})()
    world.settings = settings
    world.key = db.key(priority=7)
    db.whitelist(WHITELISTED_IP)
    db.user("alice")
    db.user("root", admin=True)
    admin = admin_app(settings)
    world.alice_cookie = cookie_header(admin.session_cookie("alice"))
    world.root_cookie = cookie_header(admin.session_cookie("root"))
    world.root_token = {"Authorization": f"Bearer {admin.access_token('root')}"}
    world.client = await make_gateway(settings)
    return world


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/unknown"),
        ("GET", "/api/"),
        ("POST", "/v1/files"),
        ("GET", "/v1"),
        ("POST", "/api/pull/"),
    ],
)
async def test_unknown_paths_are_404_and_never_forwarded(world, fake_ollama, method, path):
    response = await call(world.client, method, path, WHITELISTED_IP, json={"model": "x"})
    assert response.status_code == 404
    assert await response.get_json() == {"error": "not found"}
    assert fake_ollama.paths() == []


async def test_quarts_own_404_and_405_are_json(world):
    missing = await call(world.client, "GET", "/nothing/here", WHITELISTED_IP)
    assert missing.status_code == 404 and (await missing.get_json())["error"]
    wrong = await call(world.client, "GET", "/api/chat", WHITELISTED_IP)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert (await wrong.get_json())["error"]


@pytest.mark.parametrize("path", ["/api/pull", "/api/ollama/pull", "/api/create", "/api/copy", "/api/push"])
async def test_model_management_is_refused_to_keys_and_chat_users(world, fake_ollama, path):
    by_key = await call(
        world.client, "POST", path, KEYLESS_IP, json={"model": "m"}, headers={"X-API-Key": world.key}
    )
    by_user = await call(
        world.client, "POST", path, KEYLESS_IP, json={"model": "m"}, headers=world.alice_cookie
    )
    assert by_key.status_code == by_user.status_code == 403
    assert fake_ollama.paths() == []


async def test_deleting_a_model_is_refused_to_a_key(world, fake_ollama):
    response = await call(
        world.client,
        "DELETE",
        "/api/delete",
        KEYLESS_IP,
        json={"model": "m"},
        headers={"X-API-Key": world.key},
    )
    assert response.status_code == 403
    assert fake_ollama.paths() == []


async def test_model_management_is_allowed_to_whitelisted_ips_and_admins(world, fake_ollama):
    by_ip = await call(
        world.client, "POST", "/api/pull", WHITELISTED_IP, json={"model": "m", "stream": False}
    )
    by_admin = await call(
        world.client, "DELETE", "/api/delete", KEYLESS_IP, json={"model": "m"}, headers=world.root_cookie
    )
    by_admin_token = await call(
        world.client,
        "POST",
        "/api/copy",
        KEYLESS_IP,
        json={"source": "a", "destination": "b"},
        headers=world.root_token,
    )
    assert by_ip.status_code == by_admin.status_code == by_admin_token.status_code == 200
    assert fake_ollama.paths() == ["/api/pull", "/api/delete", "/api/copy"]


async def test_a_blob_upload_streams_through_for_an_admin(world, fake_ollama):
    digest = "sha256:" + "c" * 64
    blob = b"\x00GGUF" * 1000  # larger than MAX_BODY: model files are not held to it
    response = await call(world.client, "POST", f"/api/blobs/{digest}", WHITELISTED_IP, data=blob)
    assert response.status_code == 201
    assert fake_ollama.last(f"/api/blobs/{digest}").content == blob


async def test_a_body_over_max_body_is_413_and_never_queued(world, fake_ollama):
    response = await chat_request(world.client, WHITELISTED_IP, body=chat_body(padding="x" * 4096))
    assert response.status_code == 413
    assert "error" in await response.get_json()
    assert fake_ollama.paths() == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_a_malformed_body_is_400_before_anything_is_queued(world, fake_ollama, raw):
    response = await call(
        world.client,
        "POST",
        "/api/chat",
        WHITELISTED_IP,
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "error" in await response.get_json()
    assert fake_ollama.paths() == []
    snapshot = world.client.app.extensions["seadragon_gateway"].scheduler.snapshot()
    assert snapshot["queue_length"] == snapshot["active_requests"] == 0


async def test_the_clients_credentials_and_host_never_reach_ollama(world, fake_ollama):
    headers = {
        "X-API-Key": world.key,
        "Authorization": f"Bearer {world.key}",
        "Cookie": "seadragon_session=abc; other=1",
        "Host": "gateway.example",
        "Origin": ALLOWED_ORIGIN,
        "X-Trace": "kept",
    }
    response = await chat_request(world.client, KEYLESS_IP, headers=headers)
    assert response.status_code == 200
    sent = fake_ollama.last("/api/chat")
    for name in ("x-api-key", "authorization", "cookie", "origin"):
        assert name not in sent.headers
    assert sent.headers["host"] != "gateway.example"
    assert sent.headers["x-trace"] == "kept"
    assert body_of(sent) == chat_body(stream=False)


async def test_the_alias_reaches_the_same_endpoint(world, fake_ollama):
    response = await call(world.client, "POST", "/api/ollama/chat", WHITELISTED_IP, json=chat_body())
    assert response.status_code == 200
    assert fake_ollama.paths() == ["/api/chat"]


async def test_ollamas_4xx_passes_through_with_its_body(world, fake_ollama):
    fake_ollama.overrides["/api/chat"] = lambda r: httpx.Response(
        404, json={"error": "model 'nope' not found"}
    )
    response = await chat_request(world.client, WHITELISTED_IP, body=chat_body("nope", stream=False))
    assert response.status_code == 404
    assert await response.get_json() == {"error": "model 'nope' not found"}


async def test_ollamas_5xx_becomes_a_502_with_a_json_error(world, fake_ollama):
    fake_ollama.overrides["/api/chat"] = lambda r: httpx.Response(500, text="panic: runtime error")
    response = await chat_request(world.client, WHITELISTED_IP)
    assert response.status_code == 502
    assert "panic" in (await response.get_json())["error"]


async def test_ollamas_503_stays_503_with_retry_after(world, fake_ollama):
    fake_ollama.overrides["/api/chat"] = lambda r: httpx.Response(503, json={"error": "server busy"})
    response = await chat_request(world.client, WHITELISTED_IP)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


async def test_an_unexpected_failure_is_a_json_500_without_a_traceback(world, fake_ollama):
    def explode(request):
        raise RuntimeError("secret internals")

    fake_ollama.overrides["/api/chat"] = explode
    response = await chat_request(world.client, WHITELISTED_IP)
    assert response.status_code == 500
    body = await response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert (await response.get_json())["error"]


async def test_an_allowed_origin_gets_cors_with_credentials(world):
    response = await chat_request(
        world.client, KEYLESS_IP, headers={"Origin": ALLOWED_ORIGIN, **world.alice_cookie}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Seadragon-Source" in response.headers["Access-Control-Expose-Headers"]


async def test_an_unlisted_origin_is_never_reflected(world):
    response = await call(world.client, "GET", "/", KEYLESS_IP, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


async def test_a_preflight_from_an_allowed_origin_is_answered(world, fake_ollama):
    headers = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key",
    }
    response = await call(world.client, "OPTIONS", "/api/chat", KEYLESS_IP, headers=headers)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "content-type, x-api-key"
    assert fake_ollama.paths() == []


async def test_a_preflight_from_an_unlisted_origin_is_refused(world):
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = await call(world.client, "OPTIONS", "/api/chat", KEYLESS_IP, headers=headers)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_root_says_who_answers(world):
    response = await call(world.client, "GET", "/", KEYLESS_IP)
    assert await response.get_json() == {"message": "Seadragon LLM Server"}


async def test_health_shows_backends_without_secrets_to_an_admin_only(
    settings_factory, make_gateway, fake_ollama, accounts, admin_app
):
    settings = settings_factory(OLLAMA_URLS="http://user:hunter2@gpu-a:11434=2,http://gpu-b:11434")
    made = accounts(settings)
    made.user("root", admin=True)
    made.user("bob")
    admin_token, user_token = (admin_app(settings).access_token(name) for name in ("root", "bob"))

    def by_host(request):
        if request.url.host == "gpu-b":
            raise httpx.ConnectError("refused", request=request)
        return fake_ollama(request)

    client = await make_gateway(settings, transport=httpx.MockTransport(by_host))
    # docs/contract.md §16: anyone learns up or down, nothing of the network behind.
    for headers in ({}, {"Authorization": f"Bearer {user_token}"}, {"X-API-Key": "sdk_" + "x" * 43}):
        anonymous = await client.get("/health", headers=headers)
        assert anonymous.status_code == 200 and await anonymous.get_json() == {"status": "degraded"}
    response = await client.get("/health", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200
    health = await response.get_json()
    assert health["status"] == "degraded"
    assert [(b["url"], b["healthy"], b["slots"]) for b in health["backends"]] == [
        ("http://gpu-a:11434", True, 2),
        ("http://gpu-b:11434", False, 1),
    ]
    assert "hunter2" not in await response.get_data(as_text=True)


async def test_model_lists_merge_every_healthy_backend(settings_factory, make_gateway, accounts):
    settings = settings_factory(OLLAMA_URLS="http://gpu-a:11434,http://gpu-b:11434")
    accounts(settings).whitelist(WHITELISTED_IP)
    from tests.proxy.fake_ollama import FakeOllama

    backends = {
        "gpu-a": FakeOllama(("llama3.2:latest", "shared:7b")),
        "gpu-b": FakeOllama(("qwen:1b", "shared:7b")),
    }
    client = await make_gateway(settings, transport=httpx.MockTransport(lambda r: backends[r.url.host](r)))
    tags = await (await call(client, "GET", "/api/tags", WHITELISTED_IP)).get_json()
    assert [m["name"] for m in tags["models"]] == ["llama3.2:latest", "shared:7b", "qwen:1b"]
    models = await (await call(client, "GET", "/v1/models", WHITELISTED_IP)).get_json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["llama3.2:latest", "shared:7b", "qwen:1b"]


async def test_model_lists_merge_the_long_and_short_spellings_of_one_model(
    settings_factory, make_gateway, accounts
):
    settings = settings_factory(OLLAMA_URLS="http://gpu-a:11434,http://gpu-b:11434")
    accounts(settings).whitelist(WHITELISTED_IP)
    from tests.proxy.fake_ollama import FakeOllama

    backends = {
        "gpu-a": FakeOllama(("registry.ollama.ai/library/llama3.2:latest",)),
        "gpu-b": FakeOllama(("llama3.2", "qwen:1b")),
    }
    client = await make_gateway(settings, transport=httpx.MockTransport(lambda r: backends[r.url.host](r)))
    tags = await (await call(client, "GET", "/api/tags", WHITELISTED_IP)).get_json()
    assert [m["name"] for m in tags["models"]] == ["registry.ollama.ai/library/llama3.2:latest", "qwen:1b"]


async def test_a_request_naming_the_model_in_full_goes_to_a_backend_that_has_it(
    settings_factory, make_gateway, accounts
):
    settings = settings_factory(OLLAMA_URLS="http://gpu-a:11434,http://gpu-b:11434")
    accounts(settings).whitelist(WHITELISTED_IP)
    from tests.proxy.fake_ollama import FakeOllama

    backends = {"gpu-a": FakeOllama(("llama3.2:latest",)), "gpu-b": FakeOllama(("qwen:1b",))}
    client = await make_gateway(settings, transport=httpx.MockTransport(lambda r: backends[r.url.host](r)))
    for model in ("registry.ollama.ai/library/qwen:1b", "library/QWEN:1b"):
        await call(client, "POST", "/api/show", WHITELISTED_IP, json={"model": model})
    assert backends["gpu-b"].paths() == ["/api/show", "/api/show"] and backends["gpu-a"].paths() == []


async def test_show_goes_to_a_backend_that_has_the_model(settings_factory, make_gateway, accounts):
    settings = settings_factory(OLLAMA_URLS="http://gpu-a:11434,http://gpu-b:11434")
    accounts(settings).whitelist(WHITELISTED_IP)
    from tests.proxy.fake_ollama import FakeOllama

    backends = {"gpu-a": FakeOllama(("llama3.2:latest",)), "gpu-b": FakeOllama(("qwen:1b",))}
    client = await make_gateway(settings, transport=httpx.MockTransport(lambda r: backends[r.url.host](r)))
    response = await call(client, "POST", "/api/show", WHITELISTED_IP, json={"model": "qwen:1b"})
    assert response.status_code == 200
    assert backends["gpu-b"].paths() == ["/api/show"] and backends["gpu-a"].paths() == []


async def test_admin_stats_need_an_admin(world):
    anonymous = await call(world.client, "GET", "/api/admin/stats", KEYLESS_IP)
    by_key = await call(world.client, "GET", "/api/admin/stats", KEYLESS_IP, headers={"X-API-Key": world.key})
    by_user = await call(world.client, "GET", "/api/admin/stats", KEYLESS_IP, headers=world.alice_cookie)
    assert anonymous.status_code == by_key.status_code == 401
    assert by_user.status_code == 403
    assert "error" in await by_user.get_json()


async def test_admin_stats_are_live(world):
    await chat_request(world.client, WHITELISTED_IP)
    for credentials in (world.root_cookie, world.root_token):
        response = await call(world.client, "GET", "/api/admin/stats", KEYLESS_IP, headers=credentials)
        assert response.status_code == 200
        stats = await response.get_json()
        assert stats["queue_length"] == 0 and stats["active_requests"] == 0
        assert stats["requests_per_minute"] == 1
        assert stats["average_wait_time"] >= 0
        assert stats["by_source"]["direct_api"]["requests_per_minute"] == 1
        assert stats["backends"][0]["healthy"] is True


async def test_cors_compares_whole_origins_ignoring_case_and_a_trailing_slash(world):
    for origin in (ALLOWED_ORIGIN.upper(), ALLOWED_ORIGIN + "/"):
        response = await call(world.client, "GET", "/", KEYLESS_IP, headers={"Origin": origin})
        assert response.headers["Access-Control-Allow-Origin"] == origin
    for lookalike in (ALLOWED_ORIGIN + ".evil.example", ALLOWED_ORIGIN + ":8443", "x" + ALLOWED_ORIGIN):
        response = await call(world.client, "GET", "/", KEYLESS_IP, headers={"Origin": lookalike})
        assert "Access-Control-Allow-Origin" not in response.headers, lookalike
