"""Signing in and out: generic errors, the shared lockout, sessions that really end."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from admin_app.extensions import db
from common.models import AccessToken, LoginFailure, utcnow
from common.security import hash_secret
from common.sessions import SESSION_COOKIE_NAME, parse_user_reference, read_session_cookie
from tests.admin.helpers import PASSWORDS, bearer_token, login
from tests.conftest import TEST_SECRET


def _from(ip: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def _token_login(client, username: str, password: str, ip: str = "127.0.0.1"):
    return client.post("/auth/token", json={"username": username, "password": password}, **_from(ip))


def _cookie(client) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE_NAME)
    return cookie.value if cookie else None


# -- errors --------------------------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_generic_error(client, alice):
    wrong_password = login(client, "alice", "whatever-password")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PASSWORDS, "nobody", "whatever-password")
        unknown_user = login(client, "nobody")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert "Invalid username or password." in wrong_password.get_data(as_text=True)
    assert "Invalid username or password." in unknown_user.get_data(as_text=True)
    assert _token_login(client, "nobody", "x").get_json() == _token_login(client, "alice", "x").get_json()


def test_a_disabled_account_cannot_sign_in(client, make_user):
    make_user("bob", active=False)
    response = login(client, "bob")
    assert response.status_code == 401 and "disabled" in response.get_data(as_text=True)
    assert _token_login(client, "bob", PASSWORDS["bob"]).status_code == 401


# -- lockout ---------------------------------------------------------------------


def test_five_failures_for_one_account_lock_it_even_for_the_right_password(client, alice):
    for number in range(5):  # from five different addresses: the account count alone locks
        assert login(client, "alice", "wrong-password", **_from(f"198.51.100.{number}")).status_code == 401
    response = login(client, "alice", **_from("198.51.100.99"))
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "Too many failed logins" in response.get_data(as_text=True)
    locked = _token_login(client, "alice", PASSWORDS["alice"], "198.51.100.98")
    assert locked.status_code == 429 and "Retry-After" in locked.headers and "error" in locked.get_json()


def test_five_failures_from_one_address_lock_that_address(client, alice):
    for number in range(5):
        response = _token_login(client, f"someone{number}", "wrong-password", "203.0.113.7")
        assert response.status_code == 401
    assert login(client, "alice", **_from("203.0.113.7")).status_code == 429
    assert login(client, "alice", **_from("203.0.113.8")).status_code == 302


def test_form_and_token_failures_count_together(client, alice):
    for _ in range(3):
        assert login(client, "alice", "wrong-password").status_code == 401
    for _ in range(2):
        assert _token_login(client, "alice", "wrong-password").status_code == 401
    response = _token_login(client, "alice", PASSWORDS["alice"])
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert login(client, "alice").status_code == 429


def test_four_failures_do_not_lock(client, alice):
    for _ in range(4):
        login(client, "alice", "wrong-password")
    assert login(client, "alice").status_code == 302


def test_signing_in_again_and_again_never_locks_anyone_out(app, client, alice):
    # Only failures count (docs/contract.md §3): ten quick sign-ins in a row all succeed.
    for _ in range(5):
        assert login(client, "alice").status_code == 302
    for _ in range(5):
        response = client.post("/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
        assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 0


def test_the_lock_lifts_when_the_window_has_passed(app, client, alice):
    for _ in range(5):
        login(client, "alice", "wrong-password")
    assert login(client, "alice").status_code == 429
    with app.app_context():
        db.session.execute(sa.update(LoginFailure).values(at=utcnow() - timedelta(minutes=15, seconds=1)))
        db.session.commit()
    assert login(client, "alice").status_code == 302


def test_retry_after_counts_down_to_when_the_oldest_failure_leaves_the_window(app, client, alice):
    for _ in range(5):
        login(client, "alice", "wrong-password")
    with app.app_context():
        db.session.execute(sa.update(LoginFailure).values(at=utcnow() - timedelta(minutes=10)))
        db.session.commit()
    retry_after = int(login(client, "alice").headers["Retry-After"])
    assert 295 <= retry_after <= 301


# -- sessions ---------------------------------------------------------------------


def test_login_starts_a_fresh_session(client, alice):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = _cookie(client)
    login(client, "alice")
    assert _cookie(client) != before
    with client.session_transaction() as session:
        assert "planted" not in session


def test_the_session_cookie_is_plain_json_the_gateway_can_read(client, alice):
    login(client, "alice")
    data = read_session_cookie(_cookie(client), TEST_SECRET)
    assert parse_user_reference(data["_user_id"]) == (alice.id, alice.session_version)


def test_logout_is_post_only_and_ends_the_session(client, alice):
    login(client, "alice")
    stolen = _cookie(client)
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/admin/").status_code == 200
    response = client.post("/auth/logout")
    assert response.status_code == 302 and response.location == "/auth/login"
    assert client.get("/admin/").status_code == 302
    client.set_cookie(SESSION_COOKIE_NAME, stolen)  # a copy of the old cookie is worthless
    assert client.get("/admin/").status_code == 302


def test_changing_the_password_ends_other_sessions_and_tokens_but_not_this_one(app, client, alice):
    other = app.test_client()
    login(client, "alice")
    login(other, "alice")
    token = bearer_token(other, "alice")
    response = client.post(
        "/auth/account",
        data={
            "current_password": PASSWORDS["alice"],
            "new_password": "brand-new-pw",
            "confirm_password": "brand-new-pw",
        },
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    assert other.get("/api/admin/apikeys", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert login(app.test_client(), "alice").status_code == 401
    assert login(app.test_client(), "alice", "brand-new-pw").status_code == 302


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "current_password": "not-it-at-all",
                "new_password": "brand-new-pw",
                "confirm_password": "brand-new-pw",
            },
            "not your current password",
        ),
        (
            {"current_password": PASSWORDS["bob"], "new_password": "short", "confirm_password": "short"},
            "at least 8",
        ),
        (
            {
                "current_password": PASSWORDS["bob"],
                "new_password": "brand-new-pw",
                "confirm_password": "other-pw-x",
            },
            "The two passwords differ.",
        ),
    ],
)
def test_a_bad_password_change_is_refused_and_changes_nothing(user_client, data, message):
    response = user_client.post("/auth/account", data=data)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert user_client.get("/auth/account").status_code == 200
    assert login(user_client.application.test_client(), "bob").status_code == 302


def test_disabling_a_user_ends_their_sessions_and_tokens(admin_client, user_client, bob):
    token = bearer_token(user_client, "bob")
    assert admin_client.post(f"/admin/users/{bob.id}/disable").status_code == 302
    assert user_client.get("/auth/account").status_code == 302
    assert (
        user_client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}).status_code
        == 401
    )
    assert (
        user_client.get("/api/admin/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )


def test_the_next_parameter_never_leaves_the_site(client, alice):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert login(client, "alice", query_string={"next": target}).location == "/admin/"
        client.post("/auth/logout")
    assert login(client, "alice", query_string={"next": "/admin/users/"}).location == "/admin/users/"


# -- bearer tokens -----------------------------------------------------------------


def test_a_bearer_token_is_issued_and_stored_hashed_with_the_session_version(app, client, alice):
    response = _token_login(client, "alice", PASSWORDS["alice"])
    body = response.get_json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == app.config["SEADRAGON"].access_token_ttl
    with app.app_context():
        row = db.session.scalar(sa.select(AccessToken))
        assert row.token_hash == hash_secret(body["access_token"])
        assert row.session_version == alice.session_version
        remaining = (row.expires_at - utcnow()).total_seconds()
        assert body["expires_in"] - 5 < remaining <= body["expires_in"]


def test_an_expired_bearer_token_is_refused(app, client, alice):
    token = bearer_token(client, "alice")
    assert client.get("/api/admin/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with app.app_context():
        db.session.execute(sa.update(AccessToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = client.get("/api/admin/tokens", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "error" in response.get_json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "JSON object"),
        ([], "JSON object"),
        ({"password": "x"}, "username"),
        ({"username": "alice"}, "password"),
        ({"username": 5, "password": "x"}, "username"),
    ],
)
def test_a_malformed_token_request_gets_a_json_400(client, body, message):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = client.post("/auth/token", **kwargs)
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_the_token_endpoint_answers_errors_in_json(client):
    response = client.get("/auth/token")
    assert response.status_code == 405 and "error" in response.get_json()
