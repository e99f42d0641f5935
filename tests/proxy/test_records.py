"""What the gateway records: one request-log row per proxied request, /metrics, key usage."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from proxy_app import create_app
from tests.proxy.fake_ollama import call, chat_request
from tests.proxy.support import chat_body, cookie_header, log_rows

WHITELISTED_IP = "10.0.0.5"
KEYLESS_IP = "10.9.9.9"


def samples(text: str, name: str) -> dict[tuple, float]:
    """The values of one metric, by their label values."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_every_proxied_request_leaves_exactly_one_log_row(settings_factory, fake_ollama, accounts):
    settings = settings_factory()
    db = accounts(settings)
    db.whitelist(WHITELISTED_IP, priority=4)
    key = db.key(name="app", priority=6)
    app = create_app(settings=settings, transport=httpx.MockTransport(fake_ollama))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await chat_request(client, WHITELISTED_IP)).status_code == 200
        pull = await call(
            client, "POST", "/api/pull", KEYLESS_IP, json={"model": "m"}, headers={"X-API-Key": key}
        )
        assert pull.status_code == 403
        assert (
            await call(client, "GET", "/api/tags", KEYLESS_IP, headers={"X-API-Key": key})
        ).status_code == 200
        assert (await chat_request(client, KEYLESS_IP)).status_code == 401
        assert (await call(client, "POST", "/api/nonsense", KEYLESS_IP, json={})).status_code == 404
        bad_json = await call(
            client, "POST", "/api/chat", KEYLESS_IP, data=b"{not json", headers={"X-API-Key": key}
        )
        assert bad_json.status_code == 400
    chat, refused, tags, nobody, unknown, malformed = log_rows(settings)  # flushed at shut-down
    assert (chat.source, chat.endpoint, chat.model, chat.status, chat.client_ip) == (
        "direct_api",
        "/api/chat",
        "llama3.2",
        200,
        WHITELISTED_IP,
    )
    assert chat.whitelist_entry_id is not None and chat.stage is None
    assert chat.queue_wait_ms is not None and chat.ttfb_ms is not None and chat.duration_ms >= chat.ttfb_ms
    assert (chat.prompt_tokens, chat.completion_tokens) == (3, 1)  # from Ollama's final line
    assert chat.backend == "http://127.0.0.1:11434"
    assert (refused.endpoint, refused.status, refused.source) == ("/api/pull", 403, "custom_app")
    assert refused.api_key_id is not None and refused.error
    assert (tags.endpoint, tags.status) == ("/api/tags", 200)
    # Refused requests leave their row too, with whatever was known of them.
    assert (nobody.endpoint, nobody.status, nobody.source, nobody.client_ip) == (
        "/api/chat",
        401,
        None,
        KEYLESS_IP,
    )
    assert nobody.error
    assert (unknown.endpoint, unknown.status, unknown.source) == ("/api/nonsense", 404, None)
    assert (malformed.endpoint, malformed.status, malformed.source) == ("/api/chat", 400, "custom_app")


async def test_metrics_are_for_admins_and_the_scrape_token(
    settings_factory, make_gateway, accounts, admin_app
):
    settings = settings_factory(METRICS_TOKEN="scrape-me-0123456789")
    db = accounts(settings)
    db.whitelist(WHITELISTED_IP)
    db.user("alice")
    db.user("root", admin=True)
    admin = admin_app(settings)
    client = await make_gateway(settings)
    await chat_request(client, WHITELISTED_IP)
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    alice = cookie_header(admin.session_cookie("alice"))
    assert (await client.get("/metrics", headers=alice)).status_code == 403
    by_admin = await client.get("/metrics", headers=cookie_header(admin.session_cookie("root")))
    by_token = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
    assert by_admin.status_code == by_token.status_code == 200
    text = await by_token.get_data(as_text=True)
    assert samples(text, "seadragon_requests_total")[(("source", "direct_api"), ("status", "200"))] == 1
    assert samples(text, "seadragon_active_requests") == {(): 0}
    assert samples(text, "seadragon_upstream_open_connections") == {(): 0}


async def test_a_key_created_after_start_works_at_once(settings_factory, make_gateway, accounts):
    settings = settings_factory()
    db = accounts(settings)
    client = await make_gateway(settings)
    key = db.key()  # the cache has not refreshed since
    response = await call(
        client, "POST", "/api/chat", KEYLESS_IP, json=chat_body(), headers={"X-API-Key": key}
    )
    assert response.status_code == 200
