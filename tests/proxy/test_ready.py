"""``GET /ready`` (docs/contract.md §15): what orchestrators poll; ``/health`` stays the liveness check."""

from __future__ import annotations

import httpx

from common.db import make_async_engine
from proxy_app.gateway import EXTENSION, begin_shutdown
from tests.conftest import fresh_redis_url
from tests.live import free_port


async def test_it_is_ready_when_the_database_answers_and_a_backend_is_healthy(make_gateway, settings):
    client = await make_gateway(settings)
    response = await client.get("/ready")
    assert response.status_code == 200
    assert await response.get_json() == {"ready": True}


async def test_it_is_not_ready_without_a_healthy_backend(settings_factory, make_gateway):
    settings = settings_factory(OLLAMA_URLS="http://user:hunter2@gpu-a:11434")

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    client = await make_gateway(settings, transport=httpx.MockTransport(refused))
    response = await client.get("/ready")
    assert response.status_code == 503
    assert await response.get_json() == {"ready": False, "reason": "no healthy backend"}
    assert (await client.get("/health")).status_code == 200  # alive all the same


async def test_one_healthy_backend_of_two_is_enough(settings_factory, make_gateway, fake_ollama):
    settings = settings_factory(OLLAMA_URLS="http://gpu-a:11434,http://gpu-b:11434")

    def by_host(request):
        if request.url.host == "gpu-b":
            raise httpx.ConnectError("refused", request=request)
        return fake_ollama(request)

    client = await make_gateway(settings, transport=httpx.MockTransport(by_host))
    assert (await client.get("/ready")).status_code == 200


async def test_it_is_not_ready_while_the_database_does_not_answer(make_gateway, settings, tmp_path):
    client = await make_gateway(settings)
    gw = client.app.extensions[EXTENSION]
    assert (await client.get("/ready")).status_code == 200

    # The database's folder is gone (a volume not mounted): no connection can open the file. The
    # gateway's own engine keeps its pooled connections for its other tasks, so it is swapped here.
    working = gw.engine
    gw.engine = make_async_engine(f"sqlite:///{tmp_path / 'gone' / 'seadragon.db'}")
    try:
        response = await client.get("/ready")
        assert response.status_code == 503
        assert await response.get_json() == {"ready": False, "reason": "the database does not answer"}
        assert "seadragon.db" not in await response.get_data(as_text=True)
    finally:
        await gw.engine.dispose()
        gw.engine = working
    assert (await client.get("/ready")).status_code == 200


async def test_at_scale_it_is_not_ready_while_redis_does_not_answer(make_gateway, settings_factory):
    from redis.asyncio import Redis

    settings = settings_factory(REDIS_URL=fresh_redis_url(14))
    client = await make_gateway(settings)
    gw = client.app.extensions[EXTENSION]
    assert (await client.get("/ready")).status_code == 200

    working = gw.redis  # the scheduler keeps its own use of it; /ready asks through this one
    gw.redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    try:
        response = await client.get("/ready")
        assert response.status_code == 503
        assert await response.get_json() == {"ready": False, "reason": "redis does not answer"}
    finally:
        await gw.redis.aclose()
        gw.redis = working
    assert (await client.get("/ready")).status_code == 200


async def test_it_turns_503_the_moment_shutdown_begins(make_gateway, settings):
    client = await make_gateway(settings)
    assert (await client.get("/ready")).status_code == 200

    await begin_shutdown(client.app)  # what the server calls on SIGTERM, before any stream ends

    response = await client.get("/ready")
    assert response.status_code == 503
    assert await response.get_json() == {"ready": False, "reason": "the gateway is shutting down"}
    assert (await client.get("/health")).status_code == 200  # liveness is not readiness


async def test_anyone_may_ask_and_no_key_is_needed(make_gateway, settings):
    client = await make_gateway(settings)
    response = await client.get("/ready", headers={"X-API-Key": "sdk_not-a-key"})
    assert response.status_code == 200
