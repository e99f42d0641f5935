"""Who may open what: the access matrix over every route in the url_map."""

from __future__ import annotations

from admin_app.extensions import db
from common.models import RequestLog
from tests.admin.helpers import bearer_token, login
from tests.admin.routes import SAMPLE_ARGUMENTS, routes

EXPECTED_ENDPOINTS = {
    "dashboard.index",
    "requests.index",
    "requests.detail",
    "whitelist.index",
    "whitelist.add",
    "whitelist.remove",
    "tokens.index",
    "tokens.create",
    "tokens.revoke",
    "apikeys.index",
    "apikeys.create",
    "apikeys.revoke",
    "users.index",
    "users.change",
    "api.whitelist_list",
    "api.whitelist_add",
    "api.whitelist_remove",
    "api.tokens_list",
    "api.tokens_create",
    "api.tokens_revoke",
    "api.apikeys_list",
    "api.apikeys_create",
    "api.apikeys_revoke",
}


def _call(client, route):
    return client.open(route.url, method=route.method)


def test_the_matrix_covers_every_admin_page_and_endpoint(app):
    endpoints = {route.endpoint for route in routes(app)}
    assert EXPECTED_ENDPOINTS <= endpoints


def test_it_sends_anonymous_visitors_to_the_login_page_or_answers_401(client):
    wrong = []
    for route in routes(client.application):
        response = _call(client, route)
        if route.is_api:
            ok = response.status_code == 401 and "error" in (response.get_json(silent=True) or {})
        else:
            ok = response.status_code == 302 and response.location.startswith("/auth/login")
        if not ok:
            wrong.append(f"{route} → {response.status_code} {response.location or ''}")
    assert not wrong


def test_it_refuses_a_signed_in_non_admin_everywhere_with_403(user_client):
    wrong = []
    for route in routes(user_client.application):
        response = _call(user_client, route)
        json_ok = not route.is_api or "error" in (response.get_json(silent=True) or {})
        if response.status_code != 403 or not json_ok:
            wrong.append(f"{route} → {response.status_code}")
    assert not wrong


def test_it_refuses_a_non_admin_bearer_token_with_403(client, bob):
    token = bearer_token(client, "bob")
    wrong = []
    for route in routes(client.application):
        if route.is_api:
            response = client.open(
                route.url, method=route.method, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 403:
                wrong.append(f"{route} → {response.status_code}")
    assert not wrong


def test_it_lets_an_admin_in_everywhere(admin_client):
    with admin_client.application.app_context():  # the request the detail view's sample URL names
        db.session.add(
            RequestLog(request_id=SAMPLE_ARGUMENTS["request_id"], method="GET", endpoint="/", status=200)
        )
        db.session.commit()
    wrong = []
    for route in routes(admin_client.application):
        response = _call(admin_client, route)
        if response.status_code in (401, 403) or response.status_code >= 500:
            wrong.append(f"{route} → {response.status_code}")
        elif route.method == "GET" and response.status_code != 200:
            wrong.append(f"{route} → {response.status_code}")
    assert not wrong


def test_the_account_page_needs_a_login_but_not_admin_rights(client, bob):
    assert client.get("/auth/account").location.startswith("/auth/login")
    login(client, "bob")
    assert client.get("/auth/account").status_code == 200
    assert client.get("/admin/").status_code == 403


def test_a_non_admin_lands_on_the_home_page_after_login(client, bob):
    assert login(client, "bob").location == "/account"


def test_an_admin_lands_on_the_dashboard_after_login(client, alice):
    assert login(client, "alice").location == "/admin/"
