"""docs/contract.md §11 in a browser: a 390 px phone, text contrast ≥ 4.5:1, a skip link, a focus ring."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.panel_support import CONTRAST_SCRIPT, PHONE, admin_api, sign_in, snap, wait_for_rows

pytestmark = pytest.mark.browser

PANEL_PAGES = {
    "dashboard": "/admin/",
    "whitelist": "/admin/whitelist/",
    "tokens": "/admin/tokens/",
    "apikeys": "/admin/apikeys/",
    "users": "/admin/users/",
    "requests-page": "/admin/requests",
    "audit-page": "/admin/audit/",
    "models": "/admin/models/",
    "docs": "/docs",
    "account": "/auth/account",
}
SIGNED_OUT_PAGES = {"login": "/auth/login", "register": "/auth/register"}
MIN_CONTRAST = 4.5  # WCAG 2.1 AA for body text


@pytest.fixture(scope="module")
def request_id(live_server) -> str:
    """Something on every list: a key with limits, an entry, an invite, a refused and a failed request."""
    with admin_api(live_server) as api:
        key = api.post(
            "/api/admin/apikeys", json={"name": "a-key-with-a-long-descriptive-name", "priority": 9}
        )
        api.patch(f"/api/admin/apikeys/{key.json()['id']}", json={"models": ["llama3.2", "qwen*"], "rpm": 60})
        api.post("/api/admin/whitelist", json={"ip": "10.20.0.0/16", "label": "office network"})
        api.post("/api/admin/tokens", json={"note": "Dora, accounting"})
        with httpx.Client(base_url=live_server.url, timeout=10) as client:
            failed = client.post(
                "/api/chat",
                json={"model": "llama3.2", "messages": []},
                headers={"X-API-Key": key.json()["key"]},
            )
            refused = client.get("/api/tags", headers={"X-API-Key": "sdk_wrong"})
        wait_for_rows(api, {failed.headers["X-Request-ID"], refused.headers["X-Request-ID"]})
    return failed.headers["X-Request-ID"]


def every_page(request_id: str) -> dict[str, str]:
    """The panel's pages that need a signed-in admin, with one request's detail view."""
    return {**PANEL_PAGES, "request-detail-view": f"/admin/requests/{request_id}"}


@pytest.fixture
def phone_admin(new_page) -> Page:
    """A signed-in admin on a 390 px wide phone."""
    page = new_page()
    page.set_viewport_size(PHONE)
    sign_in(page)
    return page


def page_width(page: Page) -> int:
    """How wide the document is (wider than the viewport means sideways page scroll)."""
    page.wait_for_load_state("load")
    return page.evaluate("document.documentElement.scrollWidth")


def test_no_page_is_wider_than_a_390px_phone(phone_admin, new_page, request_id):
    widths = {}
    for name, path in every_page(request_id).items():
        phone_admin.goto(path)
        widths[name] = page_width(phone_admin)
        snap(phone_admin, name)
    visitor = new_page()
    visitor.set_viewport_size(PHONE)
    for name, path in SIGNED_OUT_PAGES.items():
        visitor.goto(path)
        widths[name] = page_width(visitor)
        snap(visitor, name)
    too_wide = {name: width for name, width in widths.items() if width > PHONE["width"]}
    assert not too_wide, too_wide
    assert len(widths) == 13


def test_a_table_scrolls_inside_its_own_box_on_a_phone(phone_admin, request_id):
    phone_admin.goto("/admin/")
    box = phone_admin.locator('section[aria-labelledby="by-source-title"] .table-wrap')
    scroll, client = box.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll > client  # the wide table is there, reachable by scrolling its box
    assert box.evaluate("el => el.tabIndex") == 0  # by keyboard too
    assert page_width(phone_admin) <= PHONE["width"]
    # The management tables become labelled cards instead (docs/contract.md §11): nothing off-screen.
    phone_admin.goto("/admin/apikeys/")
    box = phone_admin.locator(".table-wrap").first
    scroll, client = box.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll <= client
    assert phone_admin.locator("table.cards td[data-label='Status']").count() >= 1


@pytest.mark.parametrize("width", [390, 1440])
def test_all_text_has_a_contrast_of_at_least_4_5(new_page, request_id, width):
    page = new_page()
    page.set_viewport_size({"width": width, "height": 900})
    low = []
    for path in SIGNED_OUT_PAGES.values():
        page.goto(path)
        low += [(path, item) for item in page.evaluate(CONTRAST_SCRIPT) if item["ratio"] < MIN_CONTRAST]
    sign_in(page)
    checked = 0
    for path in every_page(request_id).values():
        page.goto(path)
        page.wait_for_timeout(300 if path == "/admin/" else 0)  # the dashboard's first live numbers
        found = page.evaluate(CONTRAST_SCRIPT)
        checked += len(found)
        low += [(path, item) for item in found if item["ratio"] < MIN_CONTRAST]
    assert checked > 200  # the walk saw the pages' text
    assert not low, low


def test_the_contrast_check_catches_the_old_hint_grey(new_page):
    # The same walk on the reviewed colour (#7b8a96 on white, 3.55:1) must report it.
    page = new_page()
    page.set_content('<p style="color:#7b8a96;background:#fff">hint</p><p style="color:#14232e">ink</p>')
    ratios = {item["text"]: item["ratio"] for item in page.evaluate(CONTRAST_SCRIPT)}
    assert ratios["hint"] == pytest.approx(3.55, abs=0.02)
    assert ratios["ink"] > 15


def test_the_first_tab_lands_on_a_visible_skip_link_and_focus_is_drawn(phone_admin, new_page):
    for page, path in ((phone_admin, "/admin/requests"), (new_page(), "/auth/login"), (new_page(), "/docs")):
        page.goto(path)
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        expect(skip).to_be_focused()
        expect(skip).to_be_in_viewport()
        outline = skip.evaluate(
            "el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
        )
        assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
        page.keyboard.press("Enter")
        expect(page.locator("#content")).to_be_focused()  # the next Tab starts in the page, past the header

    phone_admin.goto("/admin/apikeys/")
    for _ in range(4):  # past the skip link, into the header and the page
        phone_admin.keyboard.press("Tab")
        ring = phone_admin.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                       return {outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
                               shadow: s.boxShadow !== 'none', tag: document.activeElement.tagName}; }"""
        )
        assert ring["outline"] or ring["shadow"], ring
