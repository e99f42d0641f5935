"""The live queue for admins, cancel, eviction in-band and queue ETAs (docs/contract.md §5, §8).

Against a real one-slot gateway in front of the simulator; the admin signs in through the real
admin app (cookie + CSRF token, or a Bearer access token).
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from common.sessions import SESSION_COOKIE_NAME
from tests.proxy.queue_views import CANCELLED, cancel, view, waiting_row
from tests.proxy.queueing import DIRECT, OUTSIDE, occupy, post, submit
from tests.proxy.support import chat_body, log_rows, ndjson, sse_events
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and fills its queue

VIEW_KEYS = {
    "request_id",
    "state",
    "source",
    "who",
    "model",
    "endpoint",
    "base_priority",
    "effective_priority",
    "waited_s",
    "position",
    "eta_s",
    "backend",
}
SLOW = {"X-Sim-Delay": "0.1", "X-Sim-Tokens": "300"}  # a stream of 30 s unless cut


def signed_in_session(admin, username: str) -> tuple[str, str]:
    """A session cookie and the CSRF token its pages carry."""
    client = admin.app.test_client()
    client.post("/auth/login", data={"username": username, "password": "correct horse battery staple"})
    page = client.get("/admin/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.get_cookie(SESSION_COOKIE_NAME).value, token


def test_the_queue_lists_waiting_and_active_requests_with_the_contract_fields(world, pool, sim):
    server, _, key, _, auth = world()
    # Held longer than the others: the view must still show it active after a slow machine's polls.
    blocker = occupy(pool, server, sim, {"X-Sim-First-Token-Delay": "4"})
    queued = submit(pool, server, {**OUTSIDE, "X-API-Key": key})
    row = waiting_row(server, auth)
    rows = view(server, auth)
    assert all(set(r) == VIEW_KEYS | {"name"} for r in rows)  # the contract's fields, and a display name
    active = [r for r in rows if r["state"] == "active"]
    assert len(active) == 1 and active[0]["who"].startswith("ip:") and active[0]["backend"]
    assert active[0]["source"] == "direct_api" and active[0]["position"] is None
    assert row["who"].startswith("key:") and row["source"] == "custom_app"
    assert (active[0]["name"], row["name"]) == ("10.0.0.5/32", "key 'app'")
    assert (row["endpoint"], row["model"], row["position"]) == ("/api/chat", "llama3.2", 1)
    assert row["base_priority"] == 2 and row["backend"] is None and row["waited_s"] >= 0
    assert blocker.result().status_code == 200
    # request_id is the X-Request-ID its client receives.
    assert queued.result().headers["X-Request-ID"] == row["request_id"]


def test_the_queue_is_for_admins_only(world, admin_app):
    server, _, _, admin, _ = world()
    assert httpx.get(server.url + "/api/admin/queue", headers=OUTSIDE).status_code == 401
    bob = {"Authorization": f"Bearer {admin.access_token('bob')}"}
    refused = httpx.get(server.url + "/api/admin/queue", headers={**OUTSIDE, **bob})
    assert refused.status_code == 403 and refused.json()["error"]
    assert cancel(server, bob, "x").status_code == 403


def test_cancelling_a_waiting_request_answers_503_and_an_unknown_id_is_404(world, pool, sim):
    server, _, key, _, auth = world()
    blocker = occupy(pool, server, sim)
    queued = submit(pool, server, {**OUTSIDE, "X-API-Key": key})
    row = waiting_row(server, auth)
    answer = cancel(server, auth, row["request_id"])
    assert answer.status_code == 200 and answer.json() == {"request_id": row["request_id"], "cancelled": True}
    refused = queued.result()
    assert refused.status_code == 503 and refused.json() == {"error": CANCELLED}
    assert [r["state"] for r in view(server, auth)] == ["active"]
    assert cancel(server, auth, row["request_id"]).status_code == 404
    missing = cancel(server, auth, "0" * 32)
    assert missing.status_code == 404 and missing.json()["error"]
    assert cancel(server, auth, "x" * 500).status_code == 404
    assert blocker.result().status_code == 200
    assert len(sim.entries("/api/chat")) == 1  # the cancelled one never went upstream


def test_a_session_needs_the_csrf_token_to_cancel(world, pool, sim):
    server, _, key, admin, auth = world()
    cookie, csrf = signed_in_session(admin, "root")
    session = {"Cookie": f"{SESSION_COOKIE_NAME}={cookie}"}
    assert len(view(server, session)) == 0  # reading needs no token
    blocker = occupy(pool, server, sim)
    queued = submit(pool, server, {**OUTSIDE, "X-API-Key": key})
    row = waiting_row(server, auth)
    for bad in ({}, {"X-CSRFToken": "forged"}):
        refused = cancel(server, {**session, **bad}, row["request_id"])
        assert refused.status_code == 400 and "CSRF" in refused.json()["error"]
    assert cancel(server, {**session, "X-CSRFToken": csrf}, row["request_id"]).status_code == 200
    assert queued.result().status_code == 503
    blocker.result()


def test_a_cancelled_waiting_stream_with_headers_out_ends_in_band(world, pool, sim):
    server, _, key, _, auth = world()
    blocker = occupy(pool, server, sim)
    headers = {**OUTSIDE, "X-API-Key": key}
    with httpx.Client(timeout=30) as client:
        body = chat_body(stream=True)
        with client.stream(
            "POST", server.url + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status_code == 200  # its headers went out while it waited
            row = waiting_row(server, auth)
            assert cancel(server, auth, row["request_id"]).status_code == 200
            events = sse_events(response.read())
    assert events[-1] == 'data: {"error": {"message": "cancelled by an administrator"}}'
    assert not any("[DONE]" in e for e in events)
    blocker.result()


@pytest.mark.parametrize(
    ("path", "body"), [("/api/chat", chat_body()), ("/v1/chat/completions", chat_body(stream=True))]
)
def test_cancelling_an_active_stream_closes_upstream_and_ends_it_in_band(world, sim, path, body):
    server, _, _, _, auth = world()
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + path, json=body, headers={**DIRECT, **SLOW}) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.strip())
            rid = response.headers["X-Request-ID"]
            [row] = view(server, auth)
            assert (row["state"], row["request_id"]) == ("active", rid)
            started = time.monotonic()
            assert cancel(server, auth, rid).status_code == 200
            rest = [line for line in lines if line.strip()]
            ended = time.monotonic() - started
    assert first and ended < 1.0
    if path == "/api/chat":
        assert json.loads(rest[-1]) == {"error": CANCELLED}
        assert not any(json.loads(line).get("done") for line in rest)
    else:
        assert rest[-1] == 'data: {"error": {"message": "cancelled by an administrator"}}'
        assert "data: [DONE]" not in rest
    sim.wait_for(lambda s: s["active"] == 0, timeout=1.0)  # the upstream request was closed
    wait_until(lambda: server.snapshot()["active_requests"] == 0, timeout=1.0)
    server.stop()
    [logged] = log_rows(server.settings)
    assert (logged.status, logged.error) == (503, CANCELLED)


def test_an_evicted_stream_with_headers_out_ends_in_band(world, pool, sim):
    server, _, key, _, _ = world(MAX_QUEUE="1")
    blocker = occupy(pool, server, sim)
    with httpx.Client(timeout=30) as client:
        headers = {**OUTSIDE, "X-API-Key": key}
        with client.stream("POST", server.url + "/api/chat", json=chat_body(), headers=headers) as response:
            assert response.status_code == 200  # its headers went out while it waited
            better = submit(pool, server, DIRECT)  # priority 1 ranks ahead of the key's 2
            [line] = ndjson(response.read())
    assert "error" in line and "done" not in line
    assert better.result().status_code == 200
    blocker.result()


def test_sse_queue_comments_carry_an_eta_once_service_times_are_known(world, pool, sim):
    server, _, key, _, _ = world()
    assert post(server, DIRECT, chat_body(stream=False)).status_code == 200  # one service time known
    blocker = occupy(pool, server, sim)
    with httpx.Client(timeout=30) as client:
        body = chat_body(stream=True)
        headers = {**OUTSIDE, "X-API-Key": key}
        with client.stream(
            "POST", server.url + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            text = response.read().decode()
    first = sse_events(text)[0]
    assert re.fullmatch(r": queued position=1 eta=\d+", first), first
    assert blocker.result().status_code == 200


def test_the_documented_queue_entry_has_exactly_the_contract_fields():
    from common.gateway_openapi import SCHEMAS

    # The contract's fields, and the display name the panel shows for ``who``.
    assert (
        set(SCHEMAS["QueueEntry"]["required"])
        == set(SCHEMAS["QueueEntry"]["properties"])
        == VIEW_KEYS | {"name"}
    )
