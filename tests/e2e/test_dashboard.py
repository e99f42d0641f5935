"""The live dashboard in a real browser, against the real server with the simulator as Ollama."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.dashboard_world import live_server, make_key, signed_in, simulator  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

STREAMS = 4
# One slot, and each generation takes about 1.5 s: four requests queue behind each other.


def stream_chat(base_url: str, key: str, outcomes: list[int]) -> None:
    """One streaming chat through the gateway, read to the end."""
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hello"}], "stream": True}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        with client.stream("POST", "/api/chat", json=body, headers={"X-API-Key": key}) as response:
            for _ in response.iter_lines():
                pass
            outcomes.append(response.status_code)


def card(page: Page, name: str) -> str:
    """The text of one live card's value."""
    return page.locator(f'[data-live="{name}"]').inner_text()


def test_the_dashboard_follows_the_queue_live_without_a_reload(new_page, live_server):  # noqa: F811 (a fixture)
    api_key = make_key(live_server, "load-test")
    page = signed_in(new_page())
    expect(page.locator("[data-live-state]")).to_have_attribute("data-live-state", "live")
    expect(page.locator('[data-live="queue_length"]')).to_have_text("0")
    expect(page.locator('[data-empty-for="chart-rate"]')).to_have_text("No requests yet")
    page.evaluate("window.__sameDocument = true")  # a reload would drop it

    outcomes: list[int] = []
    threads = [
        threading.Thread(target=stream_chat, args=(live_server.url, api_key, outcomes))
        for _ in range(STREAMS)
    ]
    for thread in threads:
        thread.start()
    seen_queue, seen_active, seen_tokens = set(), set(), set()
    deadline = time.monotonic() + 30
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        seen_queue.add(card(page, "queue_length"))
        seen_active.add(card(page, "active_requests"))
        seen_tokens.add(card(page, "tokens_per_second"))
        page.wait_for_timeout(200)
    for thread in threads:
        thread.join(5)

    assert outcomes == [200] * STREAMS
    # Three waited behind the one holding the only slot, and the page showed it as it happened.
    assert {"0", "1"} <= seen_active
    assert any(value not in ("0", "—") for value in seen_queue), seen_queue
    expect(page.locator('[data-live="requests_per_minute"]')).to_have_text(str(STREAMS))
    expect(page.locator('[data-live="queue_length"]')).to_have_text("0")
    expect(page.locator('[data-live="backends"]')).to_have_text("1 up")
    # docs/contract.md §11: the Backends card names its models; tokens/s shows while generating,
    # and is cleared once nothing holds a slot (not the last value forever).
    expect(page.locator("[data-backend-models]")).to_have_text(
        "Installed models: llama3.2:latest, qwen2.5-coder:7b"
    )
    assert any(re.fullmatch(r"[\d.,]+", value) for value in seen_tokens), seen_tokens
    expect(page.locator('[data-live="tokens_per_second"]')).to_have_text("—")
    expect(page.locator('[data-live-note="tokens_per_second"]')).to_have_text("idle")
    expect(page.locator("[data-status-counts]")).to_contain_text(f"200 × {STREAMS}")
    custom = page.locator('tr[data-source="custom_app"]')
    expect(custom.locator('[data-cell="requests_per_minute"]')).to_have_text(str(STREAMS))
    expect(page.locator('[data-empty-for="chart-rate"]')).to_be_hidden()
    assert page.evaluate("window.__sameDocument") is True

    # A finished 10-second chart point puts the waits on the chart.
    expect(page.locator('[data-empty-for="chart-wait"]')).to_be_hidden(timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_it_says_when_live_data_is_unavailable_and_recovers(new_page, live_server):  # noqa: F811 (a fixture)
    page = signed_in(new_page())
    expect(page.locator("[data-live-state]")).to_have_attribute("data-live-state", "live")
    page.route("**/api/admin/stats", lambda route: route.fulfill(status=502, body="bad gateway"))
    status = page.locator("[data-live-status]")
    expect(status).to_contain_text("Live data unavailable")
    expect(page.locator("[data-live-state]")).to_have_attribute("data-live-state", "down")
    page.unroute("**/api/admin/stats")
    expect(page.locator("[data-live-state]")).to_have_attribute("data-live-state", "live")
    expect(status).to_contain_text("Live · updated")


def test_the_requests_page_and_the_key_list_show_what_went_through(new_page, live_server):  # noqa: F811 (a fixture)
    outcomes: list[int] = []
    stream_chat(live_server.url, make_key(live_server, "reporting"), outcomes)
    assert outcomes == [200]
    page = signed_in(new_page())
    page.get_by_role("navigation").get_by_role("link", name="Requests", exact=True).click()
    expect(page.get_by_role("heading", name="Requests", exact=True)).to_be_visible()
    rows = page.locator("tr[data-request-id]")
    expect(rows.first).to_be_visible()
    expect(rows.first).to_contain_text("reporting")
    expect(rows.first).to_contain_text("POST /api/chat")
    page.get_by_label("Status").fill("404")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No requests match these filters")).to_be_visible()
    page.get_by_role("link", name="Clear", exact=True).click()
    expect(rows.first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "requests.png"), full_page=True)

    page.get_by_role("navigation").get_by_role("link", name="API keys", exact=True).click()
    key_row = page.locator("tr", has_text="reporting")
    expect(key_row.locator('[data-usage="requests-24h"]')).to_have_text("1")
    expect(key_row.locator('[data-usage="tokens-7d"]')).not_to_have_text("0")
    key_row.locator('[data-usage="requests-24h"]').click()  # the count opens that key's requests
    expect(page).to_have_url(re.compile(r"/admin/requests\?key=\d+$"))
    expect(rows).to_have_count(1)
    page.go_back()
    page.screenshot(path=str(ARTIFACTS / "apikeys-usage.png"), full_page=True)


def test_the_api_documentation_renders_without_breaking_the_csp(new_page, live_server):  # noqa: F811 (a fixture)
    page = new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Seadragon Gateway")
    expect(
        page.locator(".opblock-summary-path").filter(has_text="/v1/chat/completions").first
    ).to_be_visible()
    expect(page.locator(".opblock-summary-path").filter(has_text="/api/admin/apikeys").first).to_be_visible()
    assert not problems, problems
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
