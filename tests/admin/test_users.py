"""Managing users: promote, demote, disable, enable; nobody demotes or disables themselves."""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from common.models import User
from tests.admin.helpers import login


def _user(app, username: str) -> User:
    with app.app_context():
        return db.session.scalar(sa.select(User).where(User.username == username))


def test_an_admin_cannot_demote_themselves(app, admin_client, alice, make_user):
    make_user("carol", admin=True)  # even when another administrator exists
    response = admin_client.post(f"/admin/users/{alice.id}/demote", follow_redirects=True)
    assert "you cannot demote yourself" in response.get_data(as_text=True)
    assert _user(app, "alice").is_admin


def test_an_admin_cannot_disable_themselves(app, admin_client, alice):
    response = admin_client.post(f"/admin/users/{alice.id}/disable", follow_redirects=True)
    assert "you cannot disable yourself" in response.get_data(as_text=True)
    assert _user(app, "alice").is_active
    assert admin_client.get("/admin/").status_code == 200


def test_the_users_page_offers_no_demote_or_disable_on_your_own_row(admin_client, alice, make_user):
    carol = make_user("carol", admin=True)
    page = admin_client.get("/admin/users/").get_data(as_text=True)
    assert f"/admin/users/{alice.id}/demote" not in page and f"/admin/users/{alice.id}/disable" not in page
    assert f"/admin/users/{carol.id}/demote" in page and f"/admin/users/{carol.id}/disable" in page


def test_another_admin_can_demote_an_admin(app, admin_client, make_user):
    carol = make_user("carol", admin=True)
    admin_client.post(f"/admin/users/{carol.id}/demote")
    assert not _user(app, "carol").is_admin


def test_the_last_active_admin_stays_one(app, make_user):
    # Out of reach over HTTP (an admin may not demote themselves), so asked of the service directly.
    from admin_app.services import ServiceError
    from admin_app.services import users as service

    alice = make_user("alice", admin=True)
    with app.app_context():
        try:
            service.update_user(alice.id, {"is_admin": False}, None)  # the CLI or a system actor
        except ServiceError as exc:
            assert exc.field == "is_admin" and "last active administrator" in exc.message
        else:
            raise AssertionError("the last administrator was demoted")
        assert db.session.get(User, alice.id).is_admin


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
