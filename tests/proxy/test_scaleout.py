"""Scale-out: two gateway instances on one Redis share one queue and one set of slots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import fresh_redis_url
from tests.proxy.support import chat_body

pytestmark = pytest.mark.scaleout

DIRECT = {"X-Forwarded-For": "10.0.0.5"}
HOLD = {**DIRECT, "X-Sim-First-Token-Delay": "1.5"}


@pytest.fixture
def redis_url() -> str:
    """A Redis database of these tests' own, emptied first."""
    return fresh_redis_url(7)


def post(server, headers: dict) -> httpx.Response:
    """A chat through one instance."""
    return httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=headers, timeout=30)


def test_a_request_on_one_instance_waits_for_the_slot_held_through_another(
    gw_settings, accounts, serve, sim, redis_url
):
    settings = gw_settings(REDIS_URL=redis_url)
    accounts(settings).whitelist("10.0.0.5")
    first, second = serve(settings), serve(settings)
    with ThreadPoolExecutor(max_workers=2) as pool:
        blocker = pool.submit(post, first, HOLD)
        sim.wait_for(lambda s: s["active"] == 1)
        waiting = pool.submit(post, second, DIRECT)
        second.wait_for(lambda s: s["queue_length"] == 1)
        assert blocker.result().status_code == 200
        response = waiting.result()
    assert response.status_code == 200
    assert int(response.headers["X-Seadragon-Queue-Wait"]) >= 500
    assert sim.stats()["max_active_inference"] == 1
