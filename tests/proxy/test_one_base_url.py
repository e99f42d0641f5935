"""The whole service as it runs (``python asgi.py``): admin and gateway on one base URL."""

from __future__ import annotations

import httpx
import ollama
import pytest

from tests.conftest import settings_env
from tests.live import LiveServer
from tests.proxy.support import QUESTION

pytestmark = pytest.mark.slow  # a real `python asgi.py` process

ADMIN_PASSWORD = "admin-password-one-url"


@pytest.fixture
def live(tmp_path, sim):
    """The real entry point, in front of the shared simulator."""
    env = settings_env(tmp_path, admin_password=ADMIN_PASSWORD, ollama_urls=f"{sim.url}=1")
    server = LiveServer(env).start()
    yield server
    server.stop()


def test_an_admin_token_from_flask_opens_the_gateways_stats_and_a_key_chats(live):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        login = client.post("/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        stats = client.get("/api/admin/stats", headers=admin)
        assert stats.status_code == 200
        assert {"queue_length", "active_requests", "requests_per_minute", "average_wait_time"} <= set(
            stats.json()
        )
        assert client.get("/api/admin/stats").status_code == 401
        created = client.post("/api/admin/apikeys", json={"name": "cline", "priority": 2}, headers=admin)
        assert created.status_code == 201
        key = created.json()["key"]
    chat = ollama.Client(host=live.url, headers={"X-API-Key": key})
    try:
        reply = chat.chat(model="llama3.2", messages=QUESTION)
    finally:
        chat.close()
    assert reply.done and reply.message.content
    with httpx.Client(base_url=live.url, timeout=30) as client:
        stats = client.get("/api/admin/stats", headers=admin).json()
    assert stats["requests_per_minute"] == 1
    assert stats["by_source"]["custom_app"]["requests_per_minute"] == 1
