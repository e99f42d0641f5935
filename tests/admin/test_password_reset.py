"""Password reset by an admin (docs/contract.md §14): a single-use link built from PUBLIC_URL.

alice is the admin, bob the user who forgot his password.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from admin_app.extensions import db
from common.models import AuditEntry, PasswordReset, utcnow
from tests.admin.helpers import PASSWORDS, bearer_token, login

NEW_PASSWORD = "a-brand-new-password"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def set_password(client, url: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    return client.post(
        urlsplit(url).path,
        data={"token": token_of(url), "new_password": password, "confirm_password": confirm or password},
    )


def test_the_link_is_built_from_PUBLIC_URL_and_never_from_the_host(app_factory, settings_factory, alice, bob):
    app = app_factory(settings_factory(PUBLIC_URL="https://llm.example.org/gw"))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'alice')}"
    response = client.post(f"/api/admin/users/{bob.id}/password-reset", headers={"Host": "evil.example"})
    assert response.status_code == 201
    made = response.get_json()
    assert set(made) == {"url", "expires_at"}
    assert made["url"].startswith("https://llm.example.org/gw/auth/reset?token=sdp_")
    expires = made["expires_at"]
    lifetime = timedelta(hours=24)
    with app.app_context():
        stored = db.session.scalar(sa.select(PasswordReset))
        assert abs(stored.expires_at - (utcnow() + lifetime)) < timedelta(minutes=1)
        assert token_of(made["url"]) not in str(stored.__dict__)  # only its digest is kept
    assert expires.endswith("Z")


def test_without_PUBLIC_URL_the_link_is_a_relative_path(api, bob):
    made = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()
    assert made["url"].startswith("/auth/reset?token=sdp_")


def test_using_it_sets_the_password_ends_other_sessions_and_it_works_once(app, api, bob):
    elsewhere = app.test_client()
    assert login(elsewhere, "bob").status_code == 302
    token = bearer_token(app.test_client(), "bob")
    url = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    browser = app.test_client()
    page = browser.get(url)
    assert page.status_code == 200 and "Set a new password" in page.get_data(as_text=True)
    done = set_password(browser, url)
    assert done.status_code == 302 and done.location == "/account"
    assert browser.get("/account").status_code == 200  # the browser that reset it is signed in
    assert elsewhere.get("/account").status_code == 302  # every other session ended
    scripted = app.test_client().get("/account/api/keys", headers={"Authorization": f"Bearer {token}"})
    assert scripted.status_code == 401  # and every access token
    assert login(app.test_client(), "bob", PASSWORDS["bob"]).status_code == 401
    assert login(app.test_client(), "bob", NEW_PASSWORD).status_code == 302
    again = set_password(app.test_client(), url, "yet-another-password")
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert app.test_client().get(url).status_code == 410
    assert login(app.test_client(), "bob", "yet-another-password").status_code == 401


def test_an_expired_link_is_refused_and_changes_nothing(app, api, bob):
    url = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    with app.app_context():
        db.session.execute(sa.update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    page = app.test_client().get(url)
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    assert set_password(app.test_client(), url).status_code == 410
    assert login(app.test_client(), "bob").status_code == 302  # the old password still works


def test_a_newer_link_replaces_the_older_one(app, api, bob):
    first = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    second = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    assert app.test_client().get(first).status_code == 410
    assert set_password(app.test_client(), second).status_code == 302


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [("short", None, "at least 8"), (NEW_PASSWORD, "something-else", "The two passwords differ.")],
)
def test_a_bad_new_password_keeps_the_link(app, api, bob, password, confirm, message):
    url = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    refused = set_password(app.test_client(), url, password, confirm)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert set_password(app.test_client(), url).status_code == 302


def test_an_unknown_link_or_user(app, api):
    assert app.test_client().get("/auth/reset?token=sdp_nothing").status_code == 410
    assert app.test_client().get("/auth/reset").status_code == 410
    assert api.post("/api/admin/users/999/password-reset").status_code == 404


def test_it_is_audited_without_the_secret(app, api, bob):
    url = api.post(f"/api/admin/users/{bob.id}/password-reset").get_json()["url"]
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "user.password_reset"))
        assert (entry.actor, entry.target) == ("alice", f"user:{bob.id}")
        assert token_of(url) not in str(entry.changes)
    listed = api.get("/api/admin/audit").get_json()
    assert listed[0]["action"] == "user.password_reset"


def test_the_users_page_has_a_reset_button_that_shows_the_link_once(app, admin_client, bob):
    page = admin_client.get("/admin/users/").get_data(as_text=True)
    assert f'action="/admin/users/{bob.id}/password-reset"' in page and "Reset password" in page
    shown = admin_client.post(f"/admin/users/{bob.id}/password-reset")
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "Password-reset link for bob" in body
    url = re.search(r'id="reset-url" class="mono" readonly value="([^"]+)"', body)[1].replace("&amp;", "&")
    assert "sdp_" in url and "sdp_" not in admin_client.get("/admin/users/").get_data(as_text=True)
    assert app.test_client().get(url).status_code == 200
    assert admin_client.post("/admin/users/999/password-reset").status_code == 302
