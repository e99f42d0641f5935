"""Stored XSS: names, labels and usernames are shown as text, never as markup."""

from __future__ import annotations

import pytest
from markupsafe import escape

# No spaces: a username may not contain any (README "Input rules"); "/" separates attributes as well.
PAYLOADS = ["<script>alert(1)</script>", '"><img/src=x/onerror=alert(1)>', "zz{{7*7}}zz"]
PAGES = [
    "/admin/",
    "/admin/whitelist/",
    "/admin/tokens/",
    "/admin/apikeys/",
    "/admin/users/",
    "/auth/account",
]


def _shown(body: str, payload: str) -> bool:
    """The payload appears as text (escaped the way Jinja escapes)."""
    return str(escape(payload)) in body


def _assert_inert(body: str, payload: str) -> None:
    if escape(payload) != payload:
        assert payload not in body
    assert "zz49zz" not in body  # templates never evaluate what people typed
    assert "<script>alert" not in body and "<img/src=x" not in body


@pytest.fixture
def stored(admin_client):
    """Every payload stored as a key name, a whitelist label and a username."""
    for number, payload in enumerate(PAYLOADS, start=1):
        assert admin_client.post("/admin/apikeys/", data={"name": payload, "priority": 3}).status_code == 200
        entry = {"ip": f"192.0.2.{number}", "label": payload, "priority": 2}
        assert admin_client.post("/admin/whitelist/", data=entry).status_code == 302
        token = admin_client.post("/api/admin/tokens", json={}).get_json()["token"]
        signup = admin_client.application.test_client()
        response = signup.post(
            "/auth/register", data={"token": token, "username": payload, "password": "long-enough-1"}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
    return admin_client


@pytest.mark.parametrize("page", PAGES)
def test_stored_payloads_render_inert_on_every_panel_page(stored, page):
    body = stored.get(page).get_data(as_text=True)
    if page in ("/admin/apikeys/", "/admin/whitelist/", "/admin/users/", "/admin/tokens/"):
        assert all(_shown(body, payload) for payload in PAYLOADS), f"{page} does not list every stored value"
    for payload in PAYLOADS:
        _assert_inert(body, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_payload_username_sees_its_own_name_escaped(app, payload, stored):
    client = app.test_client()
    response = client.post("/auth/login", data={"username": payload, "password": "long-enough-1"})
    assert response.status_code == 302
    body = client.get("/auth/account").get_data(as_text=True)
    assert _shown(body, payload)
    _assert_inert(body, payload)


def test_the_key_reveal_and_the_flash_messages_escape_the_name(admin_client):
    payload = PAYLOADS[1]
    body = admin_client.post("/admin/apikeys/", data={"name": payload, "priority": 1}).get_data(as_text=True)
    assert _shown(body, payload)
    _assert_inert(body, payload)
    response = admin_client.post("/admin/apikeys/1/revoke", follow_redirects=True)
    assert "Revoked the key" in response.get_data(as_text=True)
    _assert_inert(response.get_data(as_text=True), payload)
