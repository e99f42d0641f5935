"""axe-core on every page of the product's own, at 1440 and 390 px, light and dark: 0 violations.

Swagger UI's ``/docs`` is left out: it is a vendored viewer (its known issues are listed in the
README's "The panel"). The gateway runs without a backend: the pages need none.
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.e2e.panel_support import DESKTOP, PHONE, admin_api, sign_in

pytestmark = pytest.mark.browser

ADMIN_PAGES = (
    "/admin/",
    "/admin/requests/",
    "/admin/whitelist/",
    "/admin/tokens/",
    "/admin/apikeys/",
    "/admin/users/",
    "/admin/audit/",
    "/auth/account",
    "/account",
    "/chat",
    "/no-such-page",
)
PUBLIC_PAGES = ("/auth/login", "/auth/register", "/auth/reset?token=sdp_unknown")


def violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it stands, one line per rule with its nodes."""
    results = Axe().run(page)
    return [
        f"{rule['id']} ({rule['impact']}): " + "; ".join(node["target"][0] for node in rule["nodes"][:5])
        for rule in results.response["violations"]
    ]


def check(page: Page, paths, found: dict) -> None:
    for path in paths:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            for label, viewport in (("1440", DESKTOP), ("390", PHONE)):
                page.set_viewport_size(viewport)
                page.goto(path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(200)  # transitions (the phone drawer) end
                problems = violations(page)
                if problems:
                    found[f"{path} {label} {scheme}"] = problems


def test_no_page_of_the_product_has_an_axe_violation(new_page, live_server):
    found: dict[str, list[str]] = {}
    anonymous = new_page()
    check(anonymous, PUBLIC_PAGES, found)
    admin = new_page()
    sign_in(admin)
    with admin_api(live_server) as api:  # something in each table, a key of a user, an audit entry
        api.post("/api/admin/apikeys", json={"name": "ci-bot", "priority": 2})
        api.post("/api/admin/whitelist", json={"ip": "10.0.0.0/24", "label": "build farm"})
        api.post("/api/admin/tokens", json={"note": "for Dora's laptop"})
        token = api.post("/api/admin/tokens", json={}).json()["token"]
    anonymous.goto(f"/auth/register?token={token}")  # a user besides the admin, for the users page
    anonymous.get_by_label("Username").fill("vera")
    anonymous.get_by_label("Password").fill("vera-password-1")
    anonymous.get_by_role("button", name="Create account").click()
    expect(anonymous).to_have_url(re.compile(r"/account$"))
    with admin_api(live_server) as api:
        admin.request.get("/api/tags")  # a logged request (503: no backend) for the detail view
        admin.request.post(
            "/chat/api/conversations",
            data="{}",
            headers={"Content-Type": "application/json", "X-CSRFToken": csrf_of(admin)},
        )
        rows = []
        for _ in range(50):  # the request log is written in batches
            rows = api.get("/api/admin/requests").json()["requests"]
            if rows:
                break
            admin.wait_for_timeout(200)
    check(admin, (*ADMIN_PAGES, f"/admin/requests/{rows[0]['request_id']}"), found)
    # The users page showing a password-reset link once.
    admin.set_viewport_size(DESKTOP)
    admin.goto("/admin/users/")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Reset password").first.click()
    expect(admin.locator("[data-reset-link]")).to_be_visible()
    for label, viewport in (("1440", DESKTOP), ("390", PHONE)):
        admin.set_viewport_size(viewport)
        if problems := violations(admin):
            found[f"/admin/users/ (reset link) {label}"] = problems
    assert found == {}, "\n".join(f"{where}: {problems}" for where, problems in found.items())


def csrf_of(page: Page) -> str:
    page.goto("/chat")
    return page.locator('meta[name="csrf-token"]').get_attribute("content")
