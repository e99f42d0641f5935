"""Managing users: promote, demote, disable, enable; the last admin is protected."""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from common.models import User
from tests.admin.helpers import login


def _user(app, username: str) -> User:
    with app.app_context():
        return db.session.scalar(sa.select(User).where(User.username == username))


def test_the_last_admin_cannot_demote_themselves(app, admin_client, alice):
    response = admin_client.post(f"/admin/users/{alice.id}/demote", follow_redirects=True)
    assert "last active administrator" in response.get_data(as_text=True)
    assert _user(app, "alice").is_admin


def test_the_last_admin_cannot_disable_themselves(app, admin_client, alice):
    response = admin_client.post(f"/admin/users/{alice.id}/disable", follow_redirects=True)
    assert "last active administrator" in response.get_data(as_text=True)
    assert _user(app, "alice").is_active
    assert admin_client.get("/admin/").status_code == 200


def test_an_admin_can_step_down_when_another_admin_exists(app, admin_client, alice, make_user):
    make_user("carol", admin=True)
    response = admin_client.post(f"/admin/users/{alice.id}/demote")
    assert response.location == "/auth/account"
    assert not _user(app, "alice").is_admin
    assert admin_client.get("/admin/").status_code == 403


def test_a_disabled_admin_does_not_count_as_another_admin(app, admin_client, alice, make_user):
    make_user("carol", admin=True, active=False)
    admin_client.post(f"/admin/users/{alice.id}/demote")
    assert _user(app, "alice").is_admin


def test_promoting_gives_the_panel_and_demoting_takes_it_away(app, admin_client, user_client, bob):
    assert user_client.get("/admin/").status_code == 403
    admin_client.post(f"/admin/users/{bob.id}/promote")
    assert user_client.get("/admin/").status_code == 200
    admin_client.post(f"/admin/users/{bob.id}/demote")
    assert user_client.get("/admin/").status_code == 403


def test_enabling_a_disabled_user_lets_them_sign_in_again(app, admin_client, bob):
    admin_client.post(f"/admin/users/{bob.id}/disable")
    assert login(app.test_client(), "bob").status_code == 401
    admin_client.post(f"/admin/users/{bob.id}/enable")
    assert login(app.test_client(), "bob").status_code == 302


def test_the_users_page_lists_roles_and_states(admin_client, bob, make_user):
    make_user("carol", active=False)
    page = admin_client.get("/admin/users/").get_data(as_text=True)
    for text in ("alice", "bob", "carol", "Admin", "Disabled", "(you)", "Make admin", "Enable"):
        assert text in page


def test_an_unknown_user_is_reported(admin_client):
    response = admin_client.post("/admin/users/999/disable", follow_redirects=True)
    assert "no user 999" in response.get_data(as_text=True)
