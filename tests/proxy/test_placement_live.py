"""max_parallel and sticky conversations through a real gateway on two simulators (docs/contract.md §12)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from simulator import SimulatorConfig, serve_in_thread
from tests.proxy.support import chat_body, store_profile

pytestmark = pytest.mark.costly  # serves the gateway on two simulators

DIRECT = {"X-Forwarded-For": "10.0.0.5"}
SLOW = {"X-Sim-Delay": "0.1", "X-Sim-Tokens": "10"}  # about a second


@pytest.fixture
def two_sims():
    sims = [serve_in_thread(SimulatorConfig(tokens=3, token_delay=0.0)) for _ in range(2)]
    yield sims
    for sim in sims:
        sim.stop()


def chats_on(sim) -> int:
    return sim.stats()["requests"].get("/api/chat", 0)


def post(server, headers: dict | None = None, model: str = "llama3.2") -> httpx.Response:
    response = httpx.post(
        server.url + "/api/chat",
        json=chat_body(model, stream=False),
        headers={**DIRECT, **(headers or {})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def test_a_conversation_stays_on_the_backend_of_its_first_turn(settings_factory, accounts, serve, two_sims):
    first, second = two_sims
    settings = settings_factory(
        OLLAMA_URLS=f"{first.url}=1,{second.url}=1", TRUSTED_PROXIES="127.0.0.1", STICKY_MAX_DELAY="10"
    )
    accounts(settings).whitelist("10.0.0.5")
    server = serve(settings)
    turn = {"X-Seadragon-Conversation": "ticket-42"}
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(post, server, SLOW)  # takes the first backend
        time.sleep(0.3)
        post(server, turn)  # so the conversation starts on the second
        busy.result()
    assert (chats_on(first), chats_on(second)) == (1, 1)
    for _ in range(3):  # both free: the first backend would win every tie, the home wins instead
        post(server, turn)
    post(server)  # no conversation: the first backend
    assert (chats_on(first), chats_on(second)) == (2, 4)


def test_max_parallel_keeps_a_model_to_one_slot_while_another_model_goes(
    settings_factory, accounts, serve, sim
):
    settings = settings_factory(OLLAMA_URLS=f"{sim.url}=3", TRUSTED_PROXIES="127.0.0.1")
    accounts(settings).whitelist("10.0.0.5")
    store_profile(settings, "llama3.2:latest", max_parallel=1)
    server = serve(settings)
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(post, server, SLOW)
        time.sleep(0.3)
        second = pool.submit(post, server, SLOW)
        time.sleep(0.2)
        other = post(server, model="qwen2.5-coder:7b")  # a free slot, another model: at once
        assert int(other.headers["X-Seadragon-Queue-Wait"]) < 100
        busy.result()
        assert int(second.result().headers["X-Seadragon-Queue-Wait"]) >= 400  # waited for the first
