"""A key's ``max_queued`` and ``max_concurrent`` through a real gateway (docs/contract.md §7).

``max_queued`` refuses the identity's next waiting request with 429 + Retry-After;
``max_concurrent`` makes it wait its turn while other identities go past.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey
from common.security import hash_secret
from tests.proxy.support import chat_body

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

DIRECT = {"X-Forwarded-For": "10.0.0.5"}  # whitelisted
HOLD = {"X-Sim-First-Token-Delay": "1.5"}  # keeps a slot busy for a while


@pytest.fixture
def pool():
    """Threads for requests that run while the test watches."""
    with ThreadPoolExecutor(max_workers=6) as executor:
        yield executor


def limited_key(db, **policy) -> dict[str, str]:
    """A key carrying ``policy``; returns its request headers."""
    secret = db.key("limited", priority=2)
    with db.sessions.begin() as session:
        session.execute(sa.update(APIKey).where(APIKey.key_hash == hash_secret(secret)).values(**policy))
    return {"X-API-Key": secret, "X-Forwarded-For": "10.9.9.9"}


def post(server, headers: dict) -> httpx.Response:
    return httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=headers, timeout=30)


def test_max_queued_refuses_the_identity_s_next_waiting_request(gw_settings, accounts, serve, pool):
    settings = gw_settings()
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    key = limited_key(db, max_queued=1)
    server = serve(settings)
    holder = pool.submit(post, server, {**DIRECT, **HOLD})
    server.wait_for(lambda s: s["active_requests"] == 1)
    waiting = pool.submit(post, server, key)
    server.wait_for(lambda s: s["queue_length"] == 1)

    refused = post(server, key)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "error" in refused.json()
    assert holder.result().status_code == 200 and waiting.result().status_code == 200


def test_max_concurrent_makes_the_identity_wait_while_others_go_past(gw_settings, accounts, serve, pool):
    sim_url = gw_settings().backends[0].url
    settings = gw_settings(OLLAMA_URLS=f"{sim_url}=2")
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    key = limited_key(db, max_concurrent=1)
    server = serve(settings)
    first = pool.submit(post, server, {**key, **HOLD})
    server.wait_for(lambda s: s["active_requests"] == 1)
    second = pool.submit(post, server, {**key, **HOLD})
    server.wait_for(lambda s: s["queue_length"] == 1)

    # A slot is free, but the key already holds its one: another identity goes first.
    other = post(server, DIRECT)
    assert other.status_code == 200
    assert int(other.headers["X-Seadragon-Queue-Wait"]) < 1000  # not behind the key's 1.5 s hold
    assert first.result().status_code == 200
    assert second.result().status_code == 200
    assert int(second.result().headers["X-Seadragon-Queue-Wait"]) > 0
