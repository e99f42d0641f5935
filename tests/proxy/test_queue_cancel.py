"""An admin's queue cancel is audited, and closes the upstream at once (docs/contract.md §16).

Against a real one-slot gateway in front of the simulator, whose ``stall_headers`` fault holds
Ollama's status line back: a cancel of a request still waiting for its first byte used to hold the
slot until Ollama answered.
"""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa

from common.db import make_sessionmaker, make_sync_engine
from common.models import AuditEntry
from tests.proxy.queue_views import CANCELLED, cancel, view, waiting_row
from tests.proxy.queueing import DIRECT, OUTSIDE, occupy, submit
from tests.proxy.support import chat_body
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and fills its queue


STALLED = {**DIRECT, "X-Sim-Fault": "stall_headers=20"}  # Ollama says nothing for 20 s


def audit_rows(settings) -> list[AuditEntry]:
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def test_cancelling_a_request_before_its_first_byte_frees_the_slot_at_once(world, pool, sim):
    server, _, key, _, auth = world()
    stalled = submit(pool, server, STALLED)
    server.wait_for(lambda s: s["active_requests"] == 1)
    sim.wait_for(lambda s: s["active"] == 1)
    [row] = view(server, auth)
    assert row["state"] == "active"
    started = time.monotonic()
    assert cancel(server, auth, row["request_id"]).status_code == 200
    answer = stalled.result(timeout=5)
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 503 and answer.json() == {"error": CANCELLED}
    server.wait_for(lambda s: s["active_requests"] == 0, timeout=1.0)
    sim.wait_for(lambda s: s["active"] == 0, timeout=1.0)  # the upstream connection was closed
    # The slot is free: the next request is served now, not in 20 s.
    served = httpx.post(
        server.url + "/api/chat",
        json=chat_body(stream=False),
        headers={**OUTSIDE, "X-API-Key": key},
        timeout=5,
    )
    assert served.status_code == 200


def test_a_queue_cancel_is_audited_with_its_admin_and_request(world, pool, sim):
    server, _, key, _, auth = world()
    blocker = occupy(pool, server, sim)
    queued = submit(pool, server, {**OUTSIDE, "X-API-Key": key})
    waiting = waiting_row(server, auth)
    assert cancel(server, auth, waiting["request_id"]).status_code == 200
    assert queued.result().status_code == 503
    active = wait_until(lambda: next((r for r in view(server, auth) if r["state"] == "active"), None))
    assert cancel(server, auth, active["request_id"]).status_code == 200
    blocker.result()
    assert cancel(server, auth, "0" * 32).status_code == 404  # nothing cancelled: nothing audited
    rows = [(r.actor, r.action, r.target, r.changes) for r in audit_rows(server.settings)]
    assert rows == [
        ("root", "queue.cancel", f"request:{waiting['request_id']}", {}),
        ("root", "queue.cancel", f"request:{active['request_id']}", {}),
    ]
