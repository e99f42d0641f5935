"""Model profiles at the gateway (docs/contract.md §12): what reaches Ollama, and what the client hears."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.proxy.fake_ollama import call
from tests.proxy.support import log_rows, store_profile

IP = "10.0.0.5"
HEADER = "X-Seadragon-Adjusted"


@pytest.fixture
def started(settings_factory, accounts, make_gateway):
    """Start a gateway on the in-memory Ollama with ``IP`` whitelisted; profiles stored first."""

    async def start(profiles: dict | None = None, **env):
        settings = settings_factory(**env)
        accounts(settings).whitelist(IP)
        for model, fields in (profiles or {}).items():
            store_profile(settings, model, **fields)
        return settings, await make_gateway(settings)

    return start


async def post(client, raw: bytes, path: str = "/api/chat"):
    return await call(client, "POST", path, IP, data=raw, headers={"Content-Type": "application/json"})


RAW = (
    b'{ "model": "llama3.2", "messages": [{"role": "user", "content": "hi \\u00e9"}],\n'
    b' "stream": false, "options": {"num_ctx": 32768, "temperature": 0.70}, "keep_alive": -1 }'
)


async def test_nothing_to_change_sends_the_body_byte_for_byte(started, fake_ollama):
    _, client = await started()
    response = await post(client, RAW)
    assert response.status_code == 200 and HEADER not in response.headers
    assert fake_ollama.last("/api/chat").content == RAW


async def test_a_pinned_profile_sets_its_keys_clamps_keep_alive_and_says_so(started, fake_ollama):
    profile = {"load_options": {"num_ctx": 8192}, "keep_alive_max": "30m"}
    settings, client = await started({"llama3.2:latest": profile}, METRICS_TOKEN="scrape")
    response = await post(client, RAW)
    assert response.headers[HEADER] == "num_ctx=8192 (asked 32768); keep_alive=30m (asked -1)"
    sent = json.loads(fake_ollama.last("/api/chat").content)
    assert sent["options"] == {"num_ctx": 8192, "temperature": 0.7}
    assert sent["keep_alive"] == "30m" and sent["messages"][0]["content"] == "hi \u00e9"
    await asyncio.sleep(0.6)  # the log row is written in the next batch
    (row,) = [r for r in log_rows(settings) if r.endpoint == "/api/chat"]
    assert row.adjusted is True
    metrics = await call(client, "GET", "/metrics", IP, headers={"Authorization": "Bearer scrape"})
    assert 'seadragon_load_options_adjusted_total{model="llama3.2:latest"} 1.0' in (
        await metrics.get_data(True)
    )


async def test_load_options_server_strips_runner_keys_of_models_without_a_profile(started, fake_ollama):
    _, client = await started(LOAD_OPTIONS="server")
    raw = b'{"model":"qwen2.5:7b","prompt":"x","stream":false,'
    raw += b'"options":{"num_ctx":2048,"num_batch":64,"top_k":3}}'
    response = await post(client, raw, "/api/generate")
    assert response.headers[HEADER] == "num_ctx=default (asked 2048); num_batch=default (asked 64)"
    assert json.loads(fake_ollama.last("/api/generate").content)["options"] == {"top_k": 3}


async def test_keep_alive_settings_clamp_zero_and_forever(started, fake_ollama):
    _, client = await started(KEEP_ALIVE_MIN="5m", KEEP_ALIVE_MAX="2h")
    zero = await post(client, b'{"model":"llama3.2","messages":[],"keep_alive":0}')
    assert zero.headers[HEADER] == "keep_alive=5m (asked 0)"
    assert json.loads(fake_ollama.last("/api/chat").content)["keep_alive"] == "5m"
    forever = await post(client, b'{"model":"llama3.2","messages":[],"keep_alive":"-1m"}')
    assert forever.headers[HEADER] == "keep_alive=2h (asked -1m)"
    inside = b'{"model":"llama3.2","messages":[],"keep_alive":"1h"}'
    assert HEADER not in (await post(client, inside)).headers
    assert fake_ollama.last("/api/chat").content == inside


async def test_a_profile_keep_alive_fills_in_when_none_is_sent(started, fake_ollama):
    _, client = await started({"llama3.2:latest": {"keep_alive": 1800}})
    response = await post(client, b'{"model":"llama3.2:latest","messages":[]}')
    assert response.headers[HEADER] == "keep_alive=30m (asked none)"
    assert json.loads(fake_ollama.last("/api/chat").content)["keep_alive"] == 1800


async def test_openai_routes_are_left_alone(started, fake_ollama):
    _, client = await started({"llama3.2:latest": {"load_options": "server", "keep_alive_max": "1m"}})
    fake_ollama.overrides["/v1/chat/completions"] = lambda request: __import__("httpx").Response(
        200, json={"choices": []}
    )
    raw = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":9}}'
    response = await post(client, raw, "/v1/chat/completions")
    assert HEADER not in response.headers
    assert fake_ollama.last("/v1/chat/completions").content == raw


async def test_a_profile_change_bites_within_a_second(started, fake_ollama):
    settings, client = await started()
    assert HEADER not in (await post(client, RAW)).headers
    store_profile(settings, "llama3.2:latest", load_options={"num_ctx": 4096})
    deadline = time.monotonic() + 1.0
    while HEADER not in (response := await post(client, RAW)).headers:
        assert time.monotonic() < deadline, "the profile did not bite within 1 s"
        await asyncio.sleep(0.05)
    assert response.headers[HEADER].startswith("num_ctx=4096 (asked 32768)")
