"""The Models page (docs/contract.md §12) in a real browser: where each model is loaded, its
profile edited in place (a refused field gets its message under it), its loads and adjustments.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER

# The dashboard test's simulator and one-slot gateway, for this module too.
from tests.e2e.dashboard_world import live_server, make_key, signed_in, simulator  # noqa: F401 (fixtures)
from tests.e2e.panel_support import open_form, snap

pytestmark = pytest.mark.browser

LIVE = 15_000  # ms: the health check (5 s) and the page's poll (5 s) both have to come round


def chat(server, key: str, **options) -> httpx.Response:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hello"}], "stream": False}
    if options:
        body["options"] = options
    response = httpx.post(server.url + "/api/chat", json=body, headers={"X-API-Key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_an_admin_pins_a_models_load_options_from_the_models_page(new_page, live_server, simulator):  # noqa: F811
    simulator.configure(load_time=0.4)  # a load shows in load_duration
    key = make_key(live_server, "models-page")
    chat(live_server, key, num_ctx=2048)  # loads the model with num_ctx 2048
    page = signed_in(new_page())
    page.get_by_role("navigation", name="Admin sections").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    row = page.locator('tr[data-model="llama3.2:latest"]')
    expect(row).to_contain_text("defaults: client")
    expect(row.locator("td").nth(2)).to_contain_text(live_server_backend(live_server), timeout=LIVE)
    expect(page.locator('tr[data-model="qwen2.5-coder:7b"]')).to_contain_text("not loaded")

    row.locator("details.editor > summary").click()
    form = open_form(page)
    form.get_by_label("Load options").select_option("pinned")
    form.get_by_label("Pinned options").fill("num_ctx=8192")
    form.get_by_label("Keep-alive at most").fill("forever")
    form.get_by_role("button", name="Save").click()
    error = form.locator('[data-field="keep_alive_max"] .field-error')
    expect(error).to_contain_text("keep_alive_max must be a number of seconds or a duration")
    expect(form.get_by_label("Keep-alive at most")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Keep-alive at most").fill("2h")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("tr.editor-row")).to_have_count(0)
    expect(row).to_contain_text("pinned num_ctx=8192 · clamped 0–2h")
    expect(page.locator("[data-models-note]")).to_have_text("Saved the profile of llama3.2:latest")

    page.wait_for_timeout(1_000)  # the gateway's profile cache refreshes twice a second
    adjusted = chat(live_server, key, num_ctx=2048)  # sent as 8192: one reload, then none
    assert adjusted.headers["X-Seadragon-Adjusted"] == "num_ctx=8192 (asked 2048)"
    chat(live_server, key)
    expect(row.locator("td").nth(5)).to_have_text("2", timeout=LIVE)  # adjusted in 24 h
    expect(row.locator("td").nth(4)).to_have_text("2")  # loads in 24 h: the first, and the pin's
    snap(page, "models-page-with-a-profile")


def live_server_backend(server) -> str:
    """The simulator's URL as the gateway lists it to an admin (anonymous /health says only up or down)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        login = client.post("/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        return client.get("/health", headers=bearer).json()["backends"][0]["url"]
