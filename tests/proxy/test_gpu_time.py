"""GPU time is the currency (docs/contract.md §13), through real gateways and the simulator.

A request's GPU time is how long it held a slot (``gpu_ms`` on its row, ``load_ms`` from Ollama's
``load_duration``), exported as ``seadragon_gpu_seconds_total{source}``, and spent against the
``daily_gpu_seconds`` of its key, whitelist entry or user: 429 + Retry-After once spent, across
instances with Redis.
"""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey, User
from common.security import hash_secret
from tests.conftest import fresh_redis_url
from tests.proxy.support import chat_body, log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

HOLD = {"X-Sim-First-Token-Delay": "1.2"}  # the simulator holds the slot ~1.2 s
SCRAPE = "gpu-scrape-token"


def budget_key(db, seconds: int) -> str:
    """A key with ``daily_gpu_seconds``."""
    secret = db.key("metered", priority=2)
    with db.sessions.begin() as session:
        session.execute(
            sa.update(APIKey).where(APIKey.key_hash == hash_secret(secret)).values(daily_gpu_seconds=seconds)
        )
    return secret


def chat(server, headers: dict) -> httpx.Response:
    return httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=headers, timeout=30)


def test_a_request_s_gpu_ms_is_its_slot_time_and_the_budget_refuses_once_spent(
    gw_settings, accounts, serve, sim
):
    settings = gw_settings(METRICS_TOKEN=SCRAPE)
    db = accounts(settings)
    secret = budget_key(db, 1)
    server = serve(settings)
    started = time.monotonic()
    first = chat(server, {"X-API-Key": secret, **HOLD})
    elapsed_ms = (time.monotonic() - started) * 1000
    assert first.status_code == 200
    answer = first.json()

    refused = wait_until(lambda: (r := chat(server, {"X-API-Key": secret})).status_code == 429 and r)
    assert refused.json()["error"] == "daily GPU time limit of 1 seconds reached for this key"
    assert 86_000 <= int(refused.headers["Retry-After"]) <= 86_400

    rows = wait_until(lambda: (rows := log_rows(settings)) and rows[-1].status == 429 and rows)
    served = next(row for row in rows if row.status == 200)
    # The slot was held for the whole of Ollama's work, and no longer than the client waited.
    assert answer["total_duration"] / 1e6 <= served.gpu_ms <= elapsed_ms
    assert served.load_ms == pytest.approx(answer["load_duration"] / 1e6)
    assert all(row.gpu_ms is None for row in rows if row.status == 429)  # never held a slot

    scrape = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}).text
    line = next(
        x for x in scrape.splitlines() if x.startswith('seadragon_gpu_seconds_total{source="custom_app"}')
    )
    assert float(line.split()[-1]) == pytest.approx(served.gpu_ms / 1000)


def test_a_user_without_a_budget_takes_webchat_daily_gpu_seconds(
    gw_settings, accounts, serve, admin_app, sim
):
    settings = gw_settings(WEBCHAT_DAILY_GPU_SECONDS="1")
    db = accounts(settings)
    db.user("carol")
    token = admin_app(settings).access_token("carol")
    server = serve(settings)
    auth = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.9.9.9"}
    assert chat(server, {**auth, **HOLD}).status_code == 200
    refused = wait_until(lambda: (r := chat(server, auth)).status_code == 429 and r)
    assert refused.json()["error"] == "daily GPU time limit of 1 seconds reached for this account"
    with db.sessions.begin() as session:  # the user's own budget replaces the default
        session.execute(sa.update(User).where(User.username == "carol").values(daily_gpu_seconds=3600))
    assert wait_until(lambda: chat(server, auth).status_code == 200)


@pytest.mark.scaleout
def test_the_gpu_budget_holds_across_two_instances_on_one_redis(gw_settings, accounts, serve, sim):
    settings = gw_settings(REDIS_URL=fresh_redis_url(15))
    db = accounts(settings)
    secret = budget_key(db, 1)
    first, second = serve(settings), serve(settings)
    assert chat(second, {"X-API-Key": secret}).status_code == 200  # well under a second
    assert chat(first, {"X-API-Key": secret, **HOLD}).status_code == 200  # spends it
    # The spend reaches Redis when the first instance's request has closed, just after its answer.
    refused = wait_until(lambda: (r := chat(second, {"X-API-Key": secret})).status_code == 429 and r)
    assert refused.json()["error"] == "daily GPU time limit of 1 seconds reached for this key"
    assert chat(first, {"X-API-Key": secret}).status_code == 429
    # Both instances' rows carry the slot time that was spent (written in batches).
    assert wait_until(lambda: sum(row.gpu_ms or 0 for row in log_rows(settings)) > 1000)
