"""CSRF is enforced on every state-changing route (WTF_CSRF_ENABLED on)."""

from __future__ import annotations

import pytest

from tests.admin.helpers import csrf_token, login
from tests.admin.routes import STATE_CHANGING, routes


@pytest.fixture
def csrf_app(app_factory):
    """The admin app as in production: CSRF on."""
    return app_factory(WTF_CSRF_ENABLED=True)


@pytest.fixture
def csrf_admin(csrf_app, alice):
    """alice, signed in on the CSRF-protected app."""
    client = csrf_app.test_client()
    assert login(client, "alice").status_code == 302
    return client


def test_every_state_changing_route_is_in_the_matrix(csrf_app):
    found = routes(csrf_app, methods=STATE_CHANGING, include_public=True)
    assert {"auth.login", "auth.logout", "auth.register", "auth.account", "whitelist.add"} <= {
        route.endpoint for route in found
    }
    # 12 admin API (POST, PUT, DELETE, PATCH) + 3 chat API + 2 account API (docs/contract.md §14)
    assert sum(route.is_api for route in found) == 17


def test_it_refuses_every_state_change_without_a_csrf_token(csrf_admin):
    wrong = []
    for route in routes(csrf_admin.application, methods=STATE_CHANGING, include_public=True):
        if route.endpoint == "auth.token":
            continue  # JSON credentials, no session: nothing to forge
        response = csrf_admin.open(route.url, method=route.method, data={"name": "x"})
        if response.status_code != 400:
            wrong.append(f"{route} → {response.status_code}")
        elif route.is_api and "CSRF" not in response.get_json()["error"]:
            wrong.append(f"{route} → {response.get_json()}")
    assert not wrong


def test_it_refuses_a_forged_csrf_token(csrf_admin):
    response = csrf_admin.post("/admin/apikeys/", data={"name": "x", "priority": "1", "csrf_token": "forged"})
    assert response.status_code == 400
    response = csrf_admin.post(
        "/api/admin/apikeys", json={"name": "x", "priority": 1}, headers={"X-CSRFToken": "x"}
    )
    assert response.status_code == 400


def test_it_accepts_the_token_in_the_form_and_in_the_x_csrftoken_header(csrf_admin):
    token = csrf_token(csrf_admin, "/admin/apikeys/")
    response = csrf_admin.post("/admin/apikeys/", data={"name": "form", "priority": "1", "csrf_token": token})
    assert response.status_code == 200 and "sdk_" in response.get_data(as_text=True)
    response = csrf_admin.post(
        "/api/admin/apikeys", json={"name": "api", "priority": 1}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 201


def test_a_bearer_token_needs_no_csrf_token(csrf_app, alice):
    client = csrf_app.test_client()
    response = client.post("/auth/token", json={"username": "alice", "password": "alice-password-1"})
    token = response.get_json()["access_token"]
    response = client.post(
        "/api/admin/whitelist", json={"ip": "10.1.2.3"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201


def test_a_login_form_without_its_token_is_refused(csrf_app, alice):
    client = csrf_app.test_client()
    response = client.post("/auth/login", data={"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302
