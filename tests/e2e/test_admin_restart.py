"""Everything the admin app stores survives a restart of the real server."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER, live_env
from tests.live import LiveServer

pytestmark = pytest.mark.slow  # starts the real server twice


def _csrf(client: httpx.Client, path: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(path).text).group(1)


def _sign_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    data = {"username": username, "password": password, "csrf_token": _csrf(client, "/auth/login")}
    return client.post("/auth/login", data=data)


def test_keys_tokens_whitelist_users_and_sessions_survive_a_restart(tmp_path):
    env = live_env(tmp_path)
    server = LiveServer(env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as api:
            login = api.post("/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            key = api.post(
                "/api/admin/apikeys", json={"name": "nightly", "priority": 7}, headers=bearer
            ).json()
            api.post("/api/admin/whitelist", json={"ip": "10.8.0.0/16", "label": "vpn"}, headers=bearer)
            token = api.post("/api/admin/tokens", json={}, headers=bearer).json()["token"]
            before = {
                path: api.get(path, headers=bearer).json()
                for path in ("/api/admin/apikeys", "/api/admin/whitelist", "/api/admin/tokens")
            }
        with httpx.Client(base_url=server.url, timeout=10) as browser:
            form = {"token": token, "username": "erin", "password": "erin-password-1"}
            signed_up = browser.post(
                "/auth/register", data={**form, "csrf_token": _csrf(browser, "/auth/register")}
            )
            assert signed_up.status_code == 302
            session_cookie = dict(browser.cookies)
    finally:
        server.stop()

    assert key["key"].startswith("sdk_") and before["/api/admin/tokens"][0]["used_by"] is None
    restarted = LiveServer(env).start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=10, headers=bearer) as api:
            after = {path: api.get(path).json() for path in before}
        assert after["/api/admin/apikeys"] == before["/api/admin/apikeys"]
        assert after["/api/admin/whitelist"] == before["/api/admin/whitelist"]
        assert after["/api/admin/tokens"][0]["status"] == "used"
        assert after["/api/admin/tokens"][0]["used_by"] == "erin"
        with httpx.Client(base_url=restarted.url, timeout=10, cookies=session_cookie) as browser:
            assert browser.get("/auth/account").status_code == 200  # the session is still good
        for username, password, home in (
            ("erin", "erin-password-1", "/account"),
            (ADMIN_USER, ADMIN_PASSWORD, "/admin/"),
        ):
            with httpx.Client(base_url=restarted.url, timeout=10) as browser:
                assert _sign_in(browser, username, password).headers["location"] == home
    finally:
        restarted.stop()
    logs = server.output() + restarted.output()
    for secret in (key["key"], token, bearer["Authorization"][7:], "erin-password-1", ADMIN_PASSWORD):
        assert secret not in logs
    assert "created the admin account" in server.output()
    assert "created the admin account" not in restarted.output()  # not again on the second start
