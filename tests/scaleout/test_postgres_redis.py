"""Scale-out for real: two whole gateways (``python asgi.py``) on one PostgreSQL and one Redis."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from common.db import make_sync_engine
from common.models import RequestLog, User
from tests.conftest import fresh_redis_url, settings_env
from tests.live import LiveServer
from tests.postgres import own_postgres_database

pytestmark = pytest.mark.scaleout

ADMIN_PASSWORD = "scale-out-admin-password"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    with own_postgres_database() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """A Redis database of these tests' own, emptied first."""
    return fresh_redis_url(6)


@pytest.fixture
def simulator_url() -> Iterator[str]:
    """An Ollama simulator with quick answers."""
    from simulator import SimulatorConfig, serve_in_thread

    handle = serve_in_thread(SimulatorConfig(tokens=3, token_delay=0.0))
    yield handle.url
    handle.stop()


@pytest.fixture
def instances(tmp_path, postgres_url, redis_url, simulator_url) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two gateways sharing the database, the queue and the secret key (each its own instance dir)."""
    servers = []
    try:
        for name in ("a", "b"):
            env = settings_env(
                tmp_path / name,
                database_url=postgres_url,
                redis_url=redis_url,
                ollama_urls=f"{simulator_url}=1",
                admin_password=ADMIN_PASSWORD,
            )
            servers.append(LiveServer(env).start(timeout=60))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def admin_token(server: LiveServer) -> str:
    """An admin access token issued by one instance."""
    response = httpx.post(f"{server.url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_a_key_made_on_one_instance_works_on_the_other_and_dies_with_its_revocation(instances, postgres_url):
    first, second = instances
    token = admin_token(first)
    admin = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{first.url}/api/admin/apikeys", json={"name": "shared", "priority": 2}, headers=admin
    )
    assert created.status_code == 201
    key = created.json()["key"]

    # The other instance has never seen the key; it finds it in PostgreSQL.
    answer = httpx.post(f"{second.url}/api/chat", json=CHAT, headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["X-Seadragon-Source"] == "custom_app"
    assert answer.json()["done"] is True
    # An access token issued by one instance is good on the other (same secret, same database).
    assert httpx.get(f"{second.url}/api/admin/stats", headers=admin).status_code == 200

    revoked = httpx.delete(f"{first.url}/api/admin/apikeys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200
    deadline = time.monotonic() + 3
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = httpx.post(
            f"{second.url}/api/chat", json=CHAT, headers={"X-API-Key": key}, timeout=30
        ).status_code
        time.sleep(0.1)
    assert status == 401

    first.stop()
    second.stop()  # both flush their request logs on a clean shutdown
    engine = make_sync_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(RequestLog.endpoint, RequestLog.status, RequestLog.source)).all()
    finally:
        engine.dispose()
    assert ("/api/chat", 200, "custom_app") in rows
    assert ("/api/chat", 401, None) in rows


def test_one_registration_token_makes_one_account_across_instances(instances, postgres_url):
    first, second = instances
    admin = {"Authorization": f"Bearer {admin_token(first)}"}
    token = httpx.post(f"{first.url}/api/admin/tokens", json={}, headers=admin).json()["token"]
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def sign_up(number: int) -> None:
        base = (first, second)[number % 2].url
        with httpx.Client(base_url=base, timeout=60) as browser:
            csrf = CSRF_INPUT.search(browser.get("/auth/register").text).group(1)
            barrier.wait()
            data = {
                "token": token,
                "username": f"racer{number}",
                "password": "a-good-password",
                "csrf_token": csrf,
            }
            response = browser.post("/auth/register", data=data)
            with lock:
                statuses.append(response.status_code)

    workers = [threading.Thread(target=sign_up, args=(number,)) for number in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(statuses) == [302] + [400] * 19
    engine = make_sync_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            racers = conn.execute(sa.select(User.username).where(User.username.like("racer%"))).all()
    finally:
        engine.dispose()
    assert len(racers) == 1
