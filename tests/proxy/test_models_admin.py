"""``GET /api/admin/models`` (docs/contract.md §12) on a real gateway in front of the simulator.

The profile is set through the real admin app's ``PUT``; the gateway applies it, and the
model list shows where the model is loaded, its profile, and its loads and adjustments.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.proxy.support import chat_body
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # serves the gateway and waits out model loads

DIRECT = {"X-Forwarded-For": "10.0.0.5"}
LOAD = 0.3


@pytest.fixture
def world(gw_settings, accounts, serve, admin_app, sim):
    """A gateway on the simulator (loads take LOAD s), an admin with a token and the admin app."""
    sim.configure(load_time=LOAD)
    settings = gw_settings(HEALTH_INTERVAL="0.2")
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    db.user("root", admin=True)
    admin = admin_app(settings)
    auth = {"Authorization": f"Bearer {admin.access_token('root')}"}
    return serve(settings), admin, auth


def chat(server, **options) -> httpx.Response:
    body = chat_body(stream=False, options=options) if options else chat_body(stream=False)
    response = httpx.post(server.url + "/api/chat", json=body, headers=DIRECT, timeout=30)
    assert response.status_code == 200, response.text
    return response


def models(server, auth) -> dict[str, dict]:
    response = httpx.get(server.url + "/api/admin/models", headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    return {row["model"]: row for row in response.json()}


def test_it_lists_every_model_where_it_is_loaded_its_profile_loads_and_adjustments(world, sim):
    server, admin, auth = world
    listed = models(server, auth)
    assert set(listed) == {"llama3.2:latest", "qwen2.5-coder:7b"}
    assert listed["llama3.2:latest"] == {
        "model": "llama3.2:latest",
        "backends": [sim.url],
        "loaded_on": [],
        "profile": None,
        "adjusted_24h": 0,
        "loads_24h": 0,
    }
    chat(server, num_ctx=2048)  # a load
    chat(server, num_ctx=8192)  # a reload: other Runner options
    client = admin.app.test_client()
    pin = {"load_options": {"num_ctx": 8192}}
    saved = client.put("/api/admin/models/llama3.2/profile", json=pin, headers=auth)
    assert saved.status_code == 200
    time.sleep(1.0)  # the gateway's profile cache refreshes twice a second
    pinned = chat(server, num_ctx=2048)  # adjusted to 8192: no reload
    assert pinned.headers["X-Seadragon-Adjusted"] == "num_ctx=8192 (asked 2048)"
    assert pinned.json()["load_duration"] < LOAD * 1e9 / 2

    def settled() -> dict | None:
        row = models(server, auth)["llama3.2:latest"]
        return row if row["loads_24h"] == 2 and row["adjusted_24h"] == 1 and row["loaded_on"] else None

    row = wait_until(settled)
    assert row["profile"]["load_options"] == {"num_ctx": 8192} and row["loaded_on"] == [sim.url]
    assert sim.stats()["vram"]["loads"] == 2


def test_only_admins_see_the_models(world):
    server, _, _ = world
    assert httpx.get(server.url + "/api/admin/models", headers=DIRECT, timeout=10).status_code == 401
