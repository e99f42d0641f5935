"""Helpers for the admin tests: signing in, CSRF tokens, bearer tokens."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def login(client: FlaskClient, username: str, password: str | None = None, **kwargs):
    """Sign in through the form (with its CSRF token when CSRF is on)."""
    data = {"username": username, "password": PASSWORDS[username] if password is None else password}
    if client.application.config["WTF_CSRF_ENABLED"]:
        data["csrf_token"] = csrf_token(client)
    return client.post("/auth/login", data=data, **kwargs)


def csrf_token(client: FlaskClient, page: str = "/auth/register") -> str:
    """The CSRF token a page hands out to this client's session."""
    match = CSRF_INPUT.search(client.get(page).get_data(as_text=True))
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def bearer_token(client: FlaskClient, username: str, password: str | None = None) -> str:
    """An access token from ``POST /auth/token``."""
    response = client.post(
        "/auth/token", json={"username": username, "password": password or PASSWORDS[username]}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


ROW_ID = re.compile(r'data-request-id="([^"]+)"')


def listed(response) -> list[str]:
    """The request ids on a requests page, top to bottom."""
    return ROW_ID.findall(response.get_data(as_text=True))
