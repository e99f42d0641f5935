"""The people behind a shared key (README "End users behind a shared key"; docs/contract.md §7, §8).

A key with ``end_user_header`` (as Open WebUI sends with ENABLE_FORWARD_USER_INFO_HEADERS:
``X-OpenWebUI-User-Id``, ``X-OpenWebUI-User-Email``) shares fair share and limits per end user;
without it the header changes nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey
from common.security import hash_secret
from tests.proxy.queue_views import view
from tests.proxy.queueing import OUTSIDE, occupy, submit
from tests.proxy.support import log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and fills its queue


def shared_key(db, header: str | None, priority: int = 2) -> tuple[str, int]:
    """A key (as Open WebUI's connection would use) with ``end_user_header`` set to ``header``."""
    secret = db.key("open-webui", priority=priority)
    with db.sessions.begin() as session:
        key = session.scalars(sa.select(APIKey).where(APIKey.key_hash == hash_secret(secret))).one()
        key.end_user_header = header
        return secret, key.id


def waiting(server, auth, count: int) -> list[dict]:
    """The waiting rows once ``count`` requests wait, in dispatch order."""
    return wait_until(
        lambda: (
            (rows := [r for r in view(server, auth) if r["state"] == "waiting"])
            and len(rows) == count
            and rows
        )
    )


@pytest.mark.parametrize("header", ["X-OpenWebUI-User-Id", "X-OpenWebUI-User-Email"])
def test_fair_share_goes_per_end_user_behind_a_shared_key(world, pool, sim, header):
    server, db, _, _, auth = world(FAIR_SHARE="1", AGING_PER_MINUTE="0")
    secret, key_id = shared_key(db, header)
    people = {"X-OpenWebUI-User-Id": ("u-1", "u-2"), "X-OpenWebUI-User-Email": ("a@x.org", "b@x.org")}[header]
    blocker = occupy(pool, server, sim)
    sent = [submit(pool, server, {**OUTSIDE, "X-API-Key": secret, header: people[0]}) for _ in range(2)]
    waiting(server, auth, 2)
    sent.append(submit(pool, server, {**OUTSIDE, "X-API-Key": secret, header: people[1]}))
    rows = waiting(server, auth, 3)
    # The second person's first request goes before the first person's second one.
    assert [r["who"] for r in rows] == [
        f"key:{key_id}/end-user:{people[0]}",
        f"key:{key_id}/end-user:{people[1]}",
        f"key:{key_id}/end-user:{people[0]}",
    ]
    assert [r["effective_priority"] for r in rows] == [2, 2, 3]
    assert blocker.result().status_code == 200
    assert all(f.result().status_code == 200 for f in sent)
    server.stop()
    logged = sorted(row.end_user or "" for row in log_rows(server.settings))
    assert logged == ["", people[0], people[0], people[1]]


def test_without_the_option_the_header_changes_nothing(world, pool, sim):
    server, db, _, _, auth = world(FAIR_SHARE="1", AGING_PER_MINUTE="0")
    secret, key_id = shared_key(db, None)
    blocker = occupy(pool, server, sim)
    sent = [
        submit(pool, server, {**OUTSIDE, "X-API-Key": secret, "X-OpenWebUI-User-Id": person})
        for person in ("u-1", "u-2")
    ]
    rows = waiting(server, auth, 2)
    assert [r["who"] for r in rows] == [f"key:{key_id}"] * 2
    assert [r["effective_priority"] for r in rows] == [2, 3]  # one identity: the second pays fair share
    blocker.result()
    assert all(f.result().status_code == 200 for f in sent)
    too_long = {**OUTSIDE, "X-API-Key": secret, "X-OpenWebUI-User-Id": "x" * 500}
    assert (
        httpx.post(server.url + "/api/chat", json={"model": "llama3.2"}, headers=too_long).status_code == 200
    )
    server.stop()
    assert all(row.end_user is None for row in log_rows(server.settings))


def test_an_absent_header_is_the_key_itself_and_a_bad_value_is_400(world, sim):
    server, db, _, _, _ = world(END_USER_MAX_LENGTH="8")
    secret, key_id = shared_key(db, "X-OpenWebUI-User-Id")
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    plain = httpx.post(server.url + "/api/chat", json=body, headers={**OUTSIDE, "X-API-Key": secret})
    assert plain.status_code == 200
    for bad in ("x" * 9, "tab\there"):
        headers = {**OUTSIDE, "X-API-Key": secret, "X-OpenWebUI-User-Id": bad}
        refused = httpx.post(server.url + "/api/chat", json=body, headers=headers)
        assert refused.status_code == 400 and "X-OpenWebUI-User-Id" in refused.json()["error"]
    at_limit = {**OUTSIDE, "X-API-Key": secret, "X-OpenWebUI-User-Id": "x" * 8}
    assert httpx.post(server.url + "/api/chat", json=body, headers=at_limit).status_code == 200
    server.stop()
    rows = sorted((row.status, row.end_user or "") for row in log_rows(server.settings))
    assert rows == [(200, ""), (200, "x" * 8), (400, ""), (400, "")]
    assert {row.api_key_id for row in log_rows(server.settings)} == {key_id}  # refused, still the key's


def test_rotating_end_users_cannot_pass_the_key_s_max_queued(world, sim):
    # Issue 19: 30 requests, each naming another person, against max_queued 5: all 30 were queued.
    server, db, _, _, auth = world(FAIR_SHARE="1", AGING_PER_MINUTE="0")
    secret, key_id = shared_key(db, "X-OpenWebUI-User-Id")
    with db.sessions.begin() as session:
        session.get(APIKey, key_id).max_queued = 5
    with ThreadPoolExecutor(max_workers=32) as threads:
        blocker = occupy(threads, server, sim, hold={"X-Sim-First-Token-Delay": "4"})
        sent = [
            submit(threads, server, {**OUTSIDE, "X-API-Key": secret, "X-OpenWebUI-User-Id": f"u-{i}"})
            for i in range(30)
        ]
        answers = [future.result() for future in sent]
        assert blocker.result().status_code == 200
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 5 + [429] * 25
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status_code == 429)
