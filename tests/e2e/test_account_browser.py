"""A person's home in a real browser (docs/contract.md §14): personal keys, own usage, the way home,
dark mode. Screenshots at 1440 and 390 px under ``test-artifacts/screens/``.

The gateway runs without a backend (the keys, usage and pages need none).
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.panel_support import DESKTOP, PHONE, SCREENS, admin_api, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser


def invite_and_sign_up(page: Page, live_server: LiveServer, username: str) -> None:
    """A registration link from the admin API, used in the browser: lands on /account."""
    with admin_api(live_server) as api:
        token = api.post("/api/admin/tokens", json={}).json()["token"]
    page.goto(f"/auth/register?token={token}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-password-1")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account$"))


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width} px"


def shots(page: Page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    for label, viewport in (("1440", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(400)  # the drawer's and the layout's transitions end
        no_sideways_scroll(page)
        page.screenshot(path=str(SCREENS / f"{name}-{label}.png"), full_page=True)


def test_a_user_makes_a_key_sees_it_once_with_examples_and_revokes_it(new_page, live_server):
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    invite_and_sign_up(page, live_server, "frida")
    keys = page.locator("[data-keys]")
    expect(keys).to_contain_text("No keys yet")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("[data-key-error]")).to_contain_text("Name")  # said in words, nothing sent
    page.get_by_label("Name", exact=True).fill("laptop agent")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Your new API key")
    expect(secret).to_have_value(re.compile(r"^sdk_"))
    key = secret.input_value()
    reveal = page.locator("[data-key-reveal]")
    reveal.get_by_role("button", name="Copy").first.click()
    expect(reveal.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    base = live_server.url  # no PUBLIC_URL: the page's own origin
    assert f"apiKey: {key}" in page.get_by_label("Continue (config.yaml) example").input_value()
    assert f"apiBase: {base}" in page.get_by_label("Continue (config.yaml) example").input_value()
    for client in ("Cline (settings)", "Codex (~/.codex/config.toml)", "OpenAI Python library", "curl"):
        text = page.get_by_label(f"{client} example").input_value()
        assert key in text and f"{base}/v1" in text, client
    expect(keys.locator("tr")).to_have_count(1)
    expect(keys).to_contain_text("laptop agent")
    expect(keys).to_contain_text(key[:12])
    shots(page, "account-new-key")
    # Shown once: a reload lists the key by its prefix only.
    page.reload()
    expect(page.locator("[data-keys]")).to_contain_text("laptop agent")
    assert key not in page.content()
    # The key works as the user's (the gateway has no backend: 503, not 401).
    answer = httpx.post(
        f"{live_server.url}/api/chat",
        json={"model": "m", "messages": []},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code != 401 and answer.headers["X-Seadragon-Source"] == "custom_app"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke laptop agent").click()
    expect(page.locator("[data-keys]")).to_contain_text("Revoked")
    deadline = time.monotonic() + 1.5  # a revocation bites within a second (docs/contract.md §4)
    while True:
        refused = httpx.get(
            f"{live_server.url}/api/tags", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        if refused.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert refused.status_code == 401


def test_page_loads_are_not_usage(new_page, live_server):
    page = new_page()
    invite_and_sign_up(page, live_server, "gus")

    def usage() -> dict:
        return page.request.get("/account/api/usage").json()

    before = usage()
    for path in ("/account", "/chat", "/account", "/chat"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    after = usage()
    assert after == before and after["day"]["requests"] == 0
    page.goto("/account")
    expect(page.locator("[data-usage='0'] td").first).to_have_text("0")


def test_non_admins_reach_home_from_every_page(new_page, live_server):
    page = new_page()
    invite_and_sign_up(page, live_server, "hana")
    for path in ("/chat", "/auth/account", "/docs", "/account"):
        page.goto(path)
        brand = page.locator(".brand, .docs-brand").first
        assert brand.get_attribute("href") == "/account", path
        if path != "/docs":
            assert page.locator("a.who").get_attribute("href") == "/account"
    page.goto("/admin/")  # a page a non-admin may not see still leads home
    expect(page.get_by_role("link", name="Go to your home page")).to_have_attribute("href", "/account")


def test_dark_mode_follows_the_system_and_the_toggle_on_every_page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP, color_scheme="dark")
    try:
        page = context.new_page()
        for path in ("/auth/login", "/docs", "/no-such-page"):
            page.goto(path, wait_until="domcontentloaded")
            assert page.evaluate("document.documentElement.dataset.theme") == "dark", path
        sign_in(page)
        for path in ("/admin/", "/admin/apikeys/", "/admin/users/", "/chat", "/account"):
            page.goto(path)
            assert page.evaluate("document.documentElement.dataset.theme") == "dark", path
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(17, 26, 33)", path
        toggle = page.locator(".topbar [data-theme-toggle]")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        toggle.click()
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.goto("/admin/users/")  # the choice is kept
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.emulate_media(color_scheme="light")
        page.locator(".topbar [data-theme-toggle]").click()
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    finally:
        context.close()


def test_the_panels_key_list_names_the_owner(new_page, live_server):
    user = new_page()
    invite_and_sign_up(user, live_server, "ivo")
    user.get_by_label("Name", exact=True).fill("ivo's agent")
    user.get_by_role("button", name="Create key").click()
    expect(user.get_by_label("Your new API key")).to_have_value(re.compile(r"^sdk_"))
    admin = new_page()
    sign_in(admin)
    admin.goto("/admin/apikeys/")
    expect(admin.locator("[data-owner='ivo']")).to_have_text("Personal key of ivo")
    shots(admin, "keys-page")
    admin.goto("/admin/users/")
    shots(admin, "users-page")


def test_the_panels_tables_fit_at_1440_and_are_labelled_cards_at_390(new_page, live_server):
    with admin_api(live_server) as api:
        for number in range(3):
            made = api.post(
                "/api/admin/apikeys",
                json={
                    "name": f"an application with a long name {number}",
                    "priority": 3,
                    "models": ["llama3.2", "qwen2.5-coder:7b", "mistral*"],
                    "rpm": 120,
                    "daily_tokens": 1_000_000,
                    "end_user_header": "X-OpenWebUI-User-Id",
                },
            ).json()
        api.delete(f"/api/admin/apikeys/{made['id']}")
        api.post("/api/admin/whitelist", json={"ip": "10.20.30.0/24", "label": "the build farm"})
        api.post("/api/admin/tokens", json={"note": "for someone"})
    page = new_page()
    sign_in(page)
    for path in ("/admin/apikeys/", "/admin/users/", "/admin/whitelist/", "/admin/tokens/"):
        page.set_viewport_size(DESKTOP)
        page.goto(path)
        wraps = page.evaluate(
            "[...document.querySelectorAll('.table-wrap')].map(w => [w.scrollWidth, w.clientWidth])"
        )
        assert wraps and all(scroll <= client for scroll, client in wraps), (path, wraps)  # nothing hidden
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(200)
        no_sideways_scroll(page)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('table.cards tbody td')]
                .filter(td => td.getClientRects().length && !td.classList.contains('actions-col'))
                .filter(td => !td.dataset.label || getComputedStyle(td, '::before').content === 'none')
                .length"""
        )
        assert unlabelled == 0, path
    page.goto("/admin/apikeys/")
    revoked = page.locator("table.cards tbody tr").filter(has_text="an application with a long name 2")
    expect(revoked.locator("td[data-label='Status']")).to_have_text("Revoked")  # in words, not only dimmed
    shots(page, "keys-page")
