"""PUBLIC_URL links (never from the request's Host) and whitelist entries that admit everyone (§2, §10)."""

from __future__ import annotations

import re

import pytest

from common.sessions import SESSION_COOKIE_NAME
from tests.admin.helpers import bearer_token, login

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


def _token_link(client) -> str:
    response = client.post("/api/admin/tokens", json={}, headers=FORGED)
    assert response.status_code == 201
    return response.get_json()["register_url"]


def test_without_public_url_links_are_relative_whatever_the_host(api):
    link = _token_link(api)
    assert re.fullmatch(r"/auth/register\?token=sdr_[A-Za-z0-9_-]+", link)


def test_with_public_url_links_use_it_and_never_the_host(app_factory, settings_factory, alice):
    app = app_factory(settings_factory(public_url="https://llm.example.org/gateway/"))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'alice')}"
    link = _token_link(client)
    assert link.startswith("https://llm.example.org/gateway/auth/register?token=sdr_")
    assert "evil" not in link
    # The panel shows the same link.
    panel = app.test_client()
    assert login(panel, "alice").status_code == 302
    # The test client's cookie jar would not send the session to another host: send it by hand.
    cookie = panel.get_cookie(SESSION_COOKIE_NAME)
    headers = {**FORGED, "Cookie": f"{cookie.key}={cookie.value}"}
    stranger = app.test_client(use_cookies=False)
    response = stranger.post("/admin/tokens/", data={"expires_in_days": "2"}, headers=headers)
    body = response.get_data(as_text=True)
    assert 'value="https://llm.example.org/gateway/auth/register?token=sdr_' in body and "evil" not in body


@pytest.mark.parametrize("ip", ["0.0.0.0/0", "::/0", "::ffff:0:0/96", "0.0.0.0/0 "])
def test_an_entry_for_everyone_needs_allow_everyone(api, ip):
    response = api.post("/api/admin/whitelist", json={"ip": ip})
    assert response.status_code == 400 and "allow_everyone" in response.get_json()["error"]
    response = api.post("/api/admin/whitelist", json={"ip": ip, "allow_everyone": "yes"})
    assert response.status_code == 400 and "allow_everyone" in response.get_json()["error"]
    response = api.post("/api/admin/whitelist", json={"ip": ip, "allow_everyone": True})
    assert response.status_code == 201 and response.get_json()["ip"].endswith("/0")


def test_a_narrower_network_needs_no_flag(api):
    assert api.post("/api/admin/whitelist", json={"ip": "0.0.0.0/1"}).status_code == 201
    assert (
        api.post("/api/admin/whitelist", json={"ip": "10.0.0.0/8", "allow_everyone": False}).status_code
        == 201
    )


def test_the_panel_asks_for_the_box_and_warns_about_such_entries(admin_client):
    response = admin_client.post("/admin/whitelist/", data={"ip": "0.0.0.0/0", "priority": "2"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and 'class="field-error" id="allow_everyone-error"' in body
    assert "Warning" not in body
    response = admin_client.post(
        "/admin/whitelist/",
        data={"ip": "0.0.0.0/0", "priority": "2", "allow_everyone": "y"},
        follow_redirects=True,
    )
    body = response.get_data(as_text=True)
    assert "Warning: an entry admits every address" in body and "Admits everyone" in body
