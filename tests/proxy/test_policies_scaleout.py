"""Limits across instances (docs/contract.md §7): two gateways on one Redis share a key's counts."""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey
from common.security import hash_secret
from tests.conftest import fresh_redis_url
from tests.proxy.support import chat_body

pytestmark = pytest.mark.scaleout


def post(server, secret: str) -> httpx.Response:
    """A chat through one instance with a key."""
    return httpx.post(
        server.url + "/api/chat", json=chat_body(stream=False), headers={"X-API-Key": secret}, timeout=30
    )


def limited_key(db, **policy) -> str:
    secret = db.key("shared")
    with db.sessions.begin() as session:
        session.execute(sa.update(APIKey).where(APIKey.key_hash == hash_secret(secret)).values(**policy))
    return secret


def test_two_instances_share_a_keys_rpm_and_daily_tokens(gw_settings, accounts, serve, sim):
    settings = gw_settings(REDIS_URL=fresh_redis_url(13))
    db = accounts(settings)
    by_rpm = limited_key(db, rpm=3)
    by_tokens = limited_key(db, daily_tokens=1)
    first, second = serve(settings), serve(settings)

    statuses = [post(server, by_rpm).status_code for server in (first, second, first, second, first)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = post(second, by_rpm)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    assert post(first, by_tokens).status_code == 200  # the simulator's answer spends more than 1 token
    deadline = time.monotonic() + 5
    while (response := post(second, by_tokens)).status_code == 200:
        # The spend is written when the first instance's request has closed, just after its answer.
        assert time.monotonic() < deadline, "the other instance never saw the tokens"
        time.sleep(0.05)
    assert response.status_code == 429
    assert response.json()["error"] == "daily token limit of 1 reached for this key"
