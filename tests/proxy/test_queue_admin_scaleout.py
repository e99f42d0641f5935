"""The queue for admins across two gateway instances on one Redis (docs/contract.md §8).

Either instance lists every instance's requests and cancels one wherever it waits or streams.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import fresh_redis_url
from tests.proxy.support import chat_body, ndjson
from tests.waiting import wait_until

pytestmark = pytest.mark.scaleout

DIRECT = {"X-Forwarded-For": "10.0.0.5"}
SLOW = {**DIRECT, "X-Sim-Delay": "0.1", "X-Sim-Tokens": "300"}
CANCELLED = "cancelled by an administrator"


def view(server, auth: dict) -> list[dict]:
    """``GET /api/admin/queue`` on one instance."""
    response = httpx.get(server.url + "/api/admin/queue", headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_either_instance_lists_and_cancels_what_waits_or_streams_on_the_other(
    gw_settings, accounts, serve, sim, admin_app
):
    settings = gw_settings(REDIS_URL=fresh_redis_url(8), EARLY_HEADERS="false")
    db = accounts(settings)
    db.whitelist("10.0.0.5")
    db.user("root", admin=True)
    auth = {"Authorization": f"Bearer {admin_app(settings).access_token('root')}"}
    first, second = serve(settings), serve(settings)
    with ThreadPoolExecutor(max_workers=2) as pool, httpx.Client(timeout=30) as client:
        with client.stream("POST", first.url + "/api/chat", json=chat_body(), headers=SLOW) as active:
            lines = active.iter_lines()
            next(line for line in lines if line.strip())  # streaming through the first instance
            waiting = pool.submit(
                httpx.post, second.url + "/api/chat", json=chat_body(stream=False), headers=DIRECT, timeout=30
            )
            rows = wait_until(lambda: len(rows := view(first, auth)) == 2 and rows)
            assert sorted(r["state"] for r in rows) == ["active", "waiting"]
            assert {r["request_id"] for r in view(second, auth)} == {r["request_id"] for r in rows}
            by_state = {r["state"]: r["request_id"] for r in rows}
            assert by_state["active"] == active.headers["X-Request-ID"]
            # The waiting one (on the second instance) cancelled through the first, and back.
            cancel = httpx.delete(
                f"{first.url}/api/admin/queue/{by_state['waiting']}", headers=auth, timeout=10
            )
            assert cancel.status_code == 200
            refused = waiting.result()
            assert refused.status_code == 503 and refused.json() == {"error": CANCELLED}
            cancel = httpx.delete(
                f"{second.url}/api/admin/queue/{by_state['active']}", headers=auth, timeout=10
            )
            assert cancel.status_code == 200
            rest = [line for line in lines if line.strip()]
    assert ndjson(rest[-1]) == [{"error": CANCELLED}]
    sim.wait_for(lambda s: s["active"] == 0, timeout=2.0)
    wait_until(lambda: view(second, auth) == [], timeout=3.0)
    assert httpx.delete(f"{second.url}/api/admin/queue/{by_state['active']}", headers=auth).status_code == 404
