"""``GET /metrics`` on the real service (docs/contract.md §6): admins and the scrape token only.

The answer is Prometheus text.
"""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import settings_env
from tests.live import LiveServer

pytestmark = pytest.mark.slow  # a real `python asgi.py` process

ADMIN_PASSWORD = "admin-password-metrics"
SCRAPE_TOKEN = "scrape-token-0123456789abcdef"
# docs/contract.md §6, as prometheus_client names the families (counters lose their _total suffix).
CONTRACT_FAMILIES = {
    "seadragon_queue_length": "gauge",
    "seadragon_active_requests": "gauge",
    "seadragon_requests": "counter",
    "seadragon_client_disconnects": "counter",
    "seadragon_upstream_open_connections": "gauge",
    "seadragon_log_buffer_length": "gauge",
    "seadragon_log_rows_dropped": "counter",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory, sim_server):
    """``python asgi.py`` with a scrape token, in front of the shared simulator."""
    env = settings_env(
        tmp_path_factory.mktemp("metrics"),
        admin_password=ADMIN_PASSWORD,
        ollama_urls=f"{sim_server.url}=1",
        metrics_token=SCRAPE_TOKEN,
    )
    server = LiveServer(env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_token(live) -> str:
    """An admin's access token, issued by the admin app."""
    response = httpx.post(f"{live.url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    return response.json()["access_token"]


def families(text: str) -> dict:
    """The metric families of a scrape, by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {SCRAPE_TOKEN}"}],
    ids=["anonymous", "wrong token", "wrong scheme"],
)
def test_it_refuses_anyone_without_an_admin_login_or_the_scrape_token(live, headers):
    response = httpx.get(f"{live.url}/metrics", headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}
    assert "seadragon_" not in response.text


def test_the_scrape_token_gets_every_metric_of_the_spec(live, admin_token):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        created = client.post(
            "/api/admin/apikeys",
            json={"name": "scraped", "priority": 4},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        key = created.json()["key"]
        chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        assert client.post("/api/chat", json=chat, headers={"X-API-Key": key}).status_code == 200
        # The request is counted once its response has gone out: allow that moment to pass.
        deadline = time.monotonic() + 2
        while True:
            response = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
            assert response.status_code == 200
            if 'source="custom_app",status="200"' in response.text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert response.headers["content-type"].startswith("text/plain")
    found = families(response.text)
    assert {name: found[name].type for name in CONTRACT_FAMILIES if name in found} == CONTRACT_FAMILIES
    queue = {sample.labels["source"] for sample in found["seadragon_queue_length"].samples}
    assert queue == {"direct_api", "custom_app", "web_chat"}
    requests = {
        (sample.labels["source"], sample.labels["status"]): sample.value
        for sample in found["seadragon_requests"].samples
        if sample.name == "seadragon_requests_total"
    }
    assert requests[("custom_app", "200")] == 1


def test_an_admin_access_token_from_the_admin_app_may_scrape(live, admin_token):
    response = httpx.get(f"{live.url}/metrics", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200
    assert "seadragon_active_requests" in families(response.text)
