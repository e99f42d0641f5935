"""The admin panel in a real browser: sign in, whitelist, API keys, tokens, sign-up."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser


def sign_in(page: Page, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
    """Sign in through the login form."""
    page.goto("/auth/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def open_section(page: Page, name: str) -> None:
    """Follow a link in the navigation bar."""
    page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()


@pytest.fixture
def admin(new_page) -> Page:
    """A page signed in as the first-run administrator."""
    page = new_page()
    sign_in(page)
    expect(page).to_have_url(re.compile(r"/admin/$"))
    return page


def test_the_admin_signs_in_and_sees_the_dashboard(new_page, screenshot):
    page = new_page()
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=/admin/"))
    screenshot(page, "01-login")
    sign_in(page, password="wrong-password")
    expect(page.locator(".flash-error")).to_have_text(re.compile("Invalid username or password"))
    sign_in(page)
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator('[data-count="users"]')).to_have_text("1")
    expect(page.locator("#live-stats")).to_be_visible()
    for section in ("Whitelist", "Registration tokens", "API keys", "Users"):
        expect(page.get_by_role("navigation").get_by_role("link", name=section)).to_be_visible()
    screenshot(page, "02-dashboard")


def test_the_admin_adds_and_removes_a_whitelist_entry(admin, screenshot):
    open_section(admin, "Whitelist")
    expect(admin.get_by_text("No whitelisted addresses yet")).to_be_visible()
    admin.get_by_label("IP address or CIDR").fill("10.0.0.999")
    admin.get_by_role("button", name="Add").click()
    expect(admin.locator(".field-error")).to_contain_text("not a valid IPv4 or IPv6 address")
    screenshot(admin, "03-whitelist-error")

    admin.get_by_label("IP address or CIDR").fill("10.20.0.5/16")
    admin.get_by_label("Label").fill("office network")
    admin.get_by_label("Priority").fill("2")
    admin.get_by_role("button", name="Add").click()
    row = admin.locator("tbody tr", has_text="10.20.0.0/16")
    expect(row).to_contain_text("office network")
    admin.get_by_label("IP address or CIDR").fill("2001:db8::1")
    admin.get_by_role("button", name="Add").click()
    screenshot(admin, "04-whitelist")

    admin.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Remove").click()
    expect(row).to_be_visible()
    admin.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    expect(admin.locator(".flash-success")).to_contain_text("Removed 10.20.0.0/16")
    expect(admin.locator("tbody tr", has_text="10.20.0.0/16")).to_have_count(0)


def test_a_new_api_key_is_shown_once_copied_and_revoked(admin, screenshot):
    admin.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_section(admin, "API keys")
    admin.get_by_label("Name").fill("invoice-bot")
    admin.get_by_label("Priority").fill("4")
    admin.get_by_role("button", name="Create key").click()
    secret = admin.get_by_label("API key").input_value()
    assert re.fullmatch(r"sdk_[A-Za-z0-9_-]{43}", secret)
    admin.get_by_role("button", name="Copy").click()
    expect(admin.get_by_role("button", name="Copied")).to_be_visible()
    assert admin.evaluate("navigator.clipboard.readText()") == secret
    screenshot(admin, "05-apikey-created")

    admin.reload()  # shows the list: the key is gone, and no second key was created
    assert secret not in admin.content()
    expect(admin.get_by_label("API key")).to_have_count(0)
    row = admin.locator("tbody tr", has_text="invoice-bot")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(secret[:12])
    expect(row).to_contain_text("Active")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(admin.locator("tbody tr", has_text="invoice-bot")).to_contain_text("Revoked")
    screenshot(admin, "06-apikeys")


def test_an_invited_person_signs_up_and_is_kept_out_of_the_panel(admin, new_page, screenshot):
    open_section(admin, "Registration tokens")
    admin.get_by_label("Valid for (days)").fill("2")
    admin.get_by_role("button", name="Create token").click()
    link = admin.get_by_label("Sign-up link").input_value()
    token = admin.get_by_label("Token").input_value()
    assert link.endswith(f"/auth/register?token={token}")
    screenshot(admin, "07-token-created")

    visitor = new_page()  # a second browser context: nobody is signed in there
    visitor.goto(link)
    expect(visitor.get_by_label("Registration token")).to_have_value(token)
    visitor.get_by_label("Username").fill("dora")
    visitor.get_by_label("Password").fill("dora-password-1")
    screenshot(visitor, "08-register")
    visitor.get_by_role("button", name="Create account").click()
    expect(visitor).to_have_url(re.compile(r"/account$"))
    expect(visitor.locator(".flash-success")).to_contain_text("Welcome, dora")
    screenshot(visitor, "09-account")
    response = visitor.goto("/admin/")
    assert response.status == 403
    expect(visitor.get_by_role("heading", name="Forbidden")).to_be_visible()
    screenshot(visitor, "10-forbidden")

    admin.goto("/admin/tokens/")
    expect(admin.locator("tbody tr", has_text=token[:12])).to_contain_text("dora")
    screenshot(admin, "11-tokens")
    open_section(admin, "Users")
    expect(admin.locator("tbody tr", has_text="dora")).to_contain_text("User")
    screenshot(admin, "12-users")


def test_signing_out_ends_the_session(admin):
    admin.get_by_role("button", name="Sign out").click()
    expect(admin).to_have_url(re.compile(r"/auth/login$"))
    expect(admin.locator(".flash-success")).to_contain_text("signed out")
    admin.goto("/admin/")
    expect(admin).to_have_url(re.compile(r"/auth/login"))
