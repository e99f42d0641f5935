"""Sign-up with registration tokens: single use even under a race, clear messages."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from admin_app.extensions import db
from common.models import RegistrationToken, User, utcnow
from tests.admin.helpers import CSRF_INPUT, login


def _new_token(admin_client, days: int = 7) -> str:
    response = admin_client.post("/api/admin/tokens", json={"expires_in_days": days})
    assert response.status_code == 201
    return response.get_json()["token"]


def _sign_up(client, token: str, username: str, password: str = "a-good-password"):
    return client.post("/auth/register", data={"token": token, "username": username, "password": password})


def test_the_sign_up_link_prefills_the_token(client):
    body = client.get("/auth/register?token=sdr_abc").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="token"[^>]*value="sdr_abc"', body)


def test_a_token_creates_one_account_and_signs_it_in(app, admin_client):
    token = _new_token(admin_client)
    client = app.test_client()
    response = _sign_up(client, token, "dave")
    assert response.status_code == 302 and response.location == "/account"
    assert client.get("/auth/account").status_code == 200
    listed = admin_client.get("/api/admin/tokens").get_json()[0]
    assert listed["status"] == "used" and listed["used_by"] == "dave"
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "dave"))
        assert not user.is_admin and user.is_active


def test_a_used_token_is_refused_with_a_clear_message(app, admin_client):
    token = _new_token(admin_client)
    assert _sign_up(app.test_client(), token, "dave").status_code == 302
    response = _sign_up(app.test_client(), token, "erin")
    assert response.status_code == 400
    assert "already been used" in response.get_data(as_text=True)


def test_a_revoked_token_is_refused_with_a_clear_message(app, admin_client):
    token = _new_token(admin_client)
    token_id = admin_client.get("/api/admin/tokens").get_json()[0]["id"]
    assert admin_client.delete(f"/api/admin/tokens/{token_id}").get_json()["status"] == "revoked"
    response = _sign_up(app.test_client(), token, "dave")
    assert response.status_code == 400 and "has been revoked" in response.get_data(as_text=True)


def test_an_expired_token_is_refused_with_a_clear_message(app, admin_client):
    token = _new_token(admin_client)
    with app.app_context():
        db.session.execute(sa.update(RegistrationToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert admin_client.get("/api/admin/tokens").get_json()[0]["status"] == "expired"
    response = _sign_up(app.test_client(), token, "dave")
    assert response.status_code == 400 and "has expired" in response.get_data(as_text=True)


def test_an_unknown_token_is_refused(app):
    response = _sign_up(app.test_client(), "sdr_" + "x" * 43, "dave")
    assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)


def test_a_taken_username_does_not_burn_the_token(app, admin_client, bob):
    token = _new_token(admin_client)
    for name in ("bob", "BOB"):
        response = _sign_up(app.test_client(), token, name)
        assert response.status_code == 400 and "taken" in response.get_data(as_text=True)
    assert admin_client.get("/api/admin/tokens").get_json()[0]["status"] == "active"
    assert _sign_up(app.test_client(), token, "dave").status_code == 302


def test_a_username_lost_to_a_concurrent_insert_does_not_burn_the_token(app, admin_client, monkeypatch):
    from admin_app import accounts

    token = _new_token(admin_client)
    app.test_client()
    with app.app_context():
        db.session.add(User(username="dave", password_hash="x"))
        db.session.commit()
    # The pre-check misses it (as when another sign-up inserts it a moment later):
    monkeypatch.setattr(accounts, "find_user", lambda name: None)
    response = _sign_up(app.test_client(), token, "dave")
    assert response.status_code == 400 and "taken" in response.get_data(as_text=True)
    assert admin_client.get("/api/admin/tokens").get_json()[0]["status"] == "active"


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [("", "a-good-password", "This field is required"), ("dave", "short", "at least 8")],
)
def test_sign_up_fields_are_checked(app, admin_client, username, password, message):
    token = _new_token(admin_client)
    response = _sign_up(app.test_client(), token, username, password)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert admin_client.get("/api/admin/tokens").get_json()[0]["status"] == "active"


@pytest.mark.slow  # 50 threads
def test_fifty_concurrent_sign_ups_with_one_token_make_exactly_one_account(app_factory, alice):
    """50 browsers post the same token at once to a real threaded HTTP server."""
    app = app_factory(WTF_CSRF_ENABLED=True)
    admin = app.test_client()
    login(admin, "alice")
    token = admin.post(
        "/api/admin/tokens", json={}, headers={"X-CSRFToken": _csrf(admin.get("/admin/tokens/").text)}
    ).get_json()["token"]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    barrier = threading.Barrier(50)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def sign_up(number: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as browser:
            csrf = _csrf(browser.get("/auth/register").text)
            barrier.wait()
            data = {
                "token": token,
                "username": f"racer{number}",
                "password": "a-good-password",
                "csrf_token": csrf,
            }
            response = browser.post("/auth/register", data=data)
            with lock:
                results.append((response.status_code, response.text))

    try:
        workers = [threading.Thread(target=sign_up, args=(number,)) for number in range(50)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()

    statuses = sorted(status for status, _ in results)
    assert statuses == [302] + [400] * 49
    assert all("already been used" in text for status, text in results if status == 400)
    with app.app_context():
        racers = db.session.scalars(sa.select(User).where(User.username.like("racer%"))).all()
        assert len(racers) == 1
        claimed = db.session.scalar(sa.select(RegistrationToken))
        assert claimed.used_by_id == racers[0].id


def _csrf(body: str) -> str:
    return CSRF_INPUT.search(body).group(1)
