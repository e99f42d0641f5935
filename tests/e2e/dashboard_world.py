"""The dashboard's slow simulator and one-slot gateway, shared by the panel's browser tests."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import settings_env
from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER
from tests.live import LiveServer

TOKENS, TOKEN_DELAY = 15, 0.1  # a slow simulator: a stream lasts 1.5 s


@pytest.fixture(scope="module")
def simulator():
    """A slow simulator in its own process, as Ollama."""
    from simulator import SimulatorConfig, serve_in_subprocess

    handle = serve_in_subprocess(SimulatorConfig(tokens=TOKENS, token_delay=TOKEN_DELAY))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, simulator) -> Iterator[LiveServer]:
    """The whole gateway (``python asgi.py``) with one slot on the simulator."""
    env = settings_env(
        tmp_path_factory.mktemp("dashboard"),
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        ollama_urls=f"{simulator.url}=1",
    )
    server = LiveServer(env).start()
    yield server
    server.stop()


def make_key(server: LiveServer, name: str) -> str:
    """An API key made through the admin API."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        login = client.post("/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        token = login.json()["access_token"]
        created = client.post(
            "/api/admin/apikeys",
            json={"name": name, "priority": 5},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201
        return created.json()["key"]


def signed_in(page: Page) -> Page:
    """Sign in through the form and land on the dashboard."""
    page.goto("/auth/login")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    return page
