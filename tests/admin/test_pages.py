"""The panel as a product: security headers, cookies, error pages, one-time secrets, dashboard."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from admin_app.extensions import db
from common.models import WhitelistEntry
from common.sessions import SESSION_COOKIE_NAME, read_session_cookie
from tests.admin.helpers import login
from tests.conftest import TEST_SECRET

EXPECTED_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@pytest.mark.parametrize(
    "path",
    [
        "/auth/login",
        "/auth/register",
        "/admin/",
        "/admin/apikeys/",
        "/api/admin/apikeys",
        "/admin/missing",
        "/api/admin/missing",
        "/static/css/admin.css",
        "/static/js/admin.js",
    ],
)
def test_every_response_carries_the_security_headers(admin_client, path):
    response = admin_client.get(path)
    response.close()  # static files are streamed from an open file
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


def test_pages_carry_no_inline_script_or_handlers(admin_client):
    for path in ("/admin/", "/admin/whitelist/", "/admin/tokens/", "/admin/apikeys/", "/admin/users/"):
        body = admin_client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), path
        assert not re.search(r"\son[a-z]+=", body), path
        assert "style=" not in body, path


def test_the_session_cookie_is_httponly_and_samesite_lax(client, alice):
    response = login(client, "alice")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_the_session_cookie_is_secure_behind_https(app_factory, settings_factory, make_user):
    app = app_factory(settings_factory(https="true"))
    make_user("alice", admin=True)
    cookie = login(app.test_client(), "alice").headers["Set-Cookie"]
    assert "; Secure" in cookie


def test_unknown_pages_get_a_friendly_404_and_api_paths_json(admin_client):
    response = admin_client.get("/admin/nowhere")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)
    assert admin_client.get("/api/admin/nowhere").get_json()["error"]


def test_a_403_page_explains_without_details(user_client):
    response = user_client.get("/admin/users/")
    assert response.status_code == 403
    assert "does not have access" in response.get_data(as_text=True)


@pytest.fixture
def broken_app(app_factory):
    """An app with one view that writes, then fails."""
    app = app_factory()

    def boom():
        db.session.add(WhitelistEntry(ip="10.9.9.9", label="half-done", priority=1))
        db.session.flush()
        raise RuntimeError("sdk_leaked_secret in a message")

    app.add_url_rule("/admin/boom", "boom", boom)
    app.add_url_rule("/api/admin/boom", "api_boom", boom)
    return app


@pytest.mark.parametrize("path", ["/admin/boom", "/api/admin/boom"])
def test_a_crash_answers_500_without_a_traceback_and_rolls_back(broken_app, path, caplog):
    client = broken_app.test_client()
    response = client.get(path)
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Traceback" not in body and "RuntimeError" not in body and "sdk_leaked_secret" not in body
    if path.startswith("/api/"):
        assert response.get_json() == {"error": "internal server error"}
    else:
        assert "Something went wrong" in body
    with broken_app.app_context():
        assert db.session.scalar(sa.select(WhitelistEntry)) is None


def test_a_new_api_key_is_shown_once_and_never_again(admin_client):
    response = admin_client.post("/admin/apikeys/", data={"name": "billing", "priority": "4"})
    key = re.search(r'value="(sdk_[A-Za-z0-9_-]+)"', response.get_data(as_text=True)).group(1)
    assert "Copy it now" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    data = read_session_cookie(admin_client.get_cookie(SESSION_COOKIE_NAME).value, TEST_SECRET)
    assert key not in str(data)
    again = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    assert key not in again and key[:12] in again and "billing" in again


def test_a_new_registration_token_and_its_link_are_shown_once(admin_client):
    response = admin_client.post("/admin/tokens/", data={"expires_in_days": "3"})
    body = response.get_data(as_text=True)
    token = re.search(r'value="(sdr_[A-Za-z0-9_-]+)"', body).group(1)
    assert f'value="/auth/register?token={token}"' in body  # relative without PUBLIC_URL
    again = admin_client.get("/admin/tokens/").get_data(as_text=True)
    assert token not in again and token[:12] in again and "Active" in again


@pytest.mark.parametrize(
    ("page", "data", "message"),
    [
        ("/admin/apikeys/", {"name": "", "priority": "1"}, "This field is required"),
        (
            "/admin/apikeys/",
            {"name": "x" * 101, "priority": "1"},
            "Field must be between 1 and 100 characters",
        ),
        ("/admin/apikeys/", {"name": "ok", "priority": "1.5"}, "Not a valid integer value"),
        ("/admin/apikeys/", {"name": "ok", "priority": "-3"}, "Enter a whole number from 0 to 100."),
        ("/admin/tokens/", {"expires_in_days": "0"}, "Enter a number of days from 1 to 365."),
        ("/admin/tokens/", {"expires_in_days": "366"}, "Enter a number of days from 1 to 365."),
    ],
)
def test_panel_forms_show_field_errors(admin_client, page, data, message):
    response = admin_client.post(page, data=data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and message in body and 'aria-invalid="true"' in body
    assert "Copy it now" not in body


def test_revoking_a_key_in_the_panel(admin_client):
    admin_client.post("/admin/apikeys/", data={"name": "old", "priority": "1"})
    response = admin_client.post("/admin/apikeys/1/revoke", follow_redirects=True)
    body = response.get_data(as_text=True)
    assert "Revoked the key" in body and "Revoked</span>" in body
    assert admin_client.get("/api/admin/apikeys").get_json()[0]["is_active"] is False


def test_revoking_a_token_in_the_panel(admin_client):
    admin_client.post("/admin/tokens/", data={"expires_in_days": "7"})
    body = admin_client.post("/admin/tokens/1/revoke", follow_redirects=True).get_data(as_text=True)
    assert "is revoked" in body
    assert admin_client.get("/api/admin/tokens").get_json()[0]["status"] == "revoked"


def test_the_dashboard_counts_what_exists_and_fakes_no_live_numbers(admin_client, bob):
    admin_client.post("/api/admin/apikeys", json={"name": "a", "priority": 1})
    admin_client.post("/api/admin/apikeys", json={"name": "b", "priority": 1})
    admin_client.post("/api/admin/whitelist", json={"ip": "10.0.0.1"})
    admin_client.post("/api/admin/tokens")
    body = admin_client.get("/admin/").get_data(as_text=True)
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', body))
    assert counts == {"users": "2", "api_keys": "2", "whitelist": "1", "open_tokens": "1"}
    # The live numbers come from /api/admin/stats in the browser: the page itself shows only placeholders.
    live = re.findall(r'data-live="\w+">([^<]*)<', body)
    assert live and not [value for value in live if re.search(r"\d", value)]
