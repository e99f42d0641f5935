"""Revoking a key or removing a whitelist entry refuses new and queued requests within 1 s.

See docs/contract.md §4.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address

import httpx
import pytest

from tests.proxy.support import chat_body, ndjson
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and waits for revocation to bite

DIRECT = {"X-Forwarded-For": "10.0.0.5"}
HOLD = {"X-Sim-First-Token-Delay": "2"}


@pytest.fixture
def world(gw_settings, accounts, serve, sim):
    """A one-slot gateway whose slot is taken by a slow request from 10.0.0.5."""
    settings = gw_settings()
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    server = serve(settings)
    with ThreadPoolExecutor(max_workers=4) as pool:
        blocker = pool.submit(post, server, {**DIRECT, **HOLD})
        server.wait_for(lambda s: s["active_requests"] == 1)
        yield server, db, pool
        assert blocker.result().status_code == 200


def post(server, headers: dict, body: dict | None = None) -> httpx.Response:
    """One request to the gateway from another client IP."""
    return httpx.post(
        server.url + "/api/chat", json=body or chat_body(stream=False), headers=headers, timeout=30
    )


def test_a_key_revoked_while_queued_is_refused_within_a_second(world, sim):
    server, db, pool = world
    key = db.key(priority=5)
    queued = pool.submit(post, server, {"X-Forwarded-For": "10.9.9.9", "X-API-Key": key})
    server.wait_for(lambda s: s["queue_length"] == 1)
    db.revoke_key(key)
    revoked_at = time.monotonic()
    response = queued.result(timeout=2)
    assert time.monotonic() - revoked_at < 1.0
    assert response.status_code == 401
    assert server.snapshot()["queue_length"] == 0
    assert post(server, {"X-Forwarded-For": "10.9.9.9", "X-API-Key": key}).status_code == 401
    assert len(sim.entries("/api/chat")) == 1  # only the blocker ever reached Ollama


def test_a_whitelist_entry_removed_while_queued_refuses_its_requests(world, sim):
    server, db, pool = world
    entry = db.whitelist("10.7.0.0/16", priority=2)
    known = ip_address("10.7.1.1")
    wait_until(lambda: server.call(lambda: server.gateway.cache.snapshot.whitelist.match(known)), timeout=2)
    queued = pool.submit(post, server, {"X-Forwarded-For": "10.7.1.1"})
    server.wait_for(lambda s: s["queue_length"] == 1)
    db.unwhitelist(entry)
    removed_at = time.monotonic()
    response = queued.result(timeout=2)
    assert time.monotonic() - removed_at < 1.0
    assert response.status_code == 401
    assert post(server, {"X-Forwarded-For": "10.7.1.1"}).status_code == 401


def test_a_revoked_stream_behind_early_headers_gets_an_error_line(world):
    server, db, pool = world
    key = db.key()
    queued = pool.submit(post, server, {"X-Forwarded-For": "10.9.9.9", "X-API-Key": key}, chat_body())
    server.wait_for(lambda s: s["queue_length"] == 1)
    db.revoke_key(key)
    response = queued.result(timeout=2)
    assert response.status_code == 200  # the headers went out while it waited
    [line] = ndjson(response.content)
    assert "revoked" in line["error"]


def test_other_queued_requests_are_untouched(world):
    server, db, pool = world
    kept, revoked = db.key(name="kept"), db.key(name="revoked")
    keep = pool.submit(post, server, {"X-Forwarded-For": "10.9.9.9", "X-API-Key": kept})
    server.wait_for(lambda s: s["queue_length"] == 1)
    drop = pool.submit(post, server, {"X-Forwarded-For": "10.9.9.9", "X-API-Key": revoked})
    server.wait_for(lambda s: s["queue_length"] == 2)
    db.revoke_key(revoked)
    assert drop.result(timeout=2).status_code == 401
    assert keep.result(timeout=10).status_code == 200
