"""Usage per API key and per user on their lists: requests, tokens and average wait, 24 h and 7 days."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest

from admin_app.extensions import db
from common.models import APIKey, RequestLog, WhitelistEntry, utcnow

_ids = count()
USAGE = re.compile(r'data-usage="([\w-]+)">([^<]*)<')


@pytest.fixture
def log(app):
    """Write one request-log row ``hours_ago``."""

    def write(hours_ago: float, **fields) -> None:
        values = {"method": "POST", "endpoint": "/api/chat", "status": 200, **fields}
        row = RequestLog(
            request_id=f"use-{next(_ids)}", created_at=utcnow() - timedelta(hours=hours_ago), **values
        )
        with app.app_context():
            db.session.add(row)
            db.session.commit()

    return write


@pytest.fixture
def keys(app):
    """Two API keys: "busy" and "idle"."""
    with app.app_context():
        busy = APIKey(name="busy", key_hash="b" * 64, prefix="sdk_busy", priority=3)
        idle = APIKey(name="idle", key_hash="c" * 64, prefix="sdk_idle", priority=3)
        db.session.add_all([busy, idle])
        db.session.commit()
        return busy.id, idle.id


def usage_in_row(body: str, name: str) -> dict[str, str]:
    """The usage cells of the table row whose first cell names ``name``."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        if re.search(rf"<td>{re.escape(name)}[ <]", row):
            return dict(USAGE.findall(row))
    raise AssertionError(f"no row for {name}")


def test_the_key_list_shows_each_keys_usage_over_a_day_and_a_week(admin_client, log, keys):
    busy, _ = keys
    key = {"source": "custom_app", "api_key_id": busy}
    log(1, **key, prompt_tokens=10, completion_tokens=100, queue_wait_ms=1000)
    log(2, **key, prompt_tokens=5, completion_tokens=50, queue_wait_ms=3000)
    log(72, **key, prompt_tokens=1000, completion_tokens=2000, queue_wait_ms=8000)  # this week only
    log(24 * 10, **key, prompt_tokens=99_999, completion_tokens=1, queue_wait_ms=60_000)  # too old
    log(1, **key, status=499, stage="queued")  # counted, never dispatched: no wait, no tokens
    body = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    assert usage_in_row(body, "busy") == {
        "requests-24h": "3",
        "requests-7d": "4",
        "tokens-24h": "165",
        "tokens-7d": "3.2k",
        "wait-24h": "2.0 s",
        "wait-7d": "4.0 s",
        "gpu-24h": "0 ms",
        "gpu-7d": "0 ms",
    }
    assert usage_in_row(body, "idle") == {
        "requests-24h": "0",
        "requests-7d": "0",
        "tokens-24h": "0",
        "tokens-7d": "0",
        "wait-24h": "—",
        "wait-7d": "—",
        "gpu-24h": "—",
        "gpu-7d": "—",
    }
    # The count links to that key's requests.
    assert f'href="/admin/requests?key={busy}" data-usage="requests-24h"' in body


def test_the_user_list_shows_each_users_usage(admin_client, log, alice, bob):
    log(3, source="web_chat", user_id=bob.id, prompt_tokens=2, completion_tokens=1500, queue_wait_ms=250)
    log(100, source="web_chat", user_id=bob.id, prompt_tokens=3, completion_tokens=3, queue_wait_ms=750)
    body = admin_client.get("/admin/users/").get_data(as_text=True)
    assert usage_in_row(body, "bob") == {
        "requests-24h": "1",
        "requests-7d": "2",
        "tokens-24h": "1.5k",
        "tokens-7d": "1.5k",
        "wait-24h": "250 ms",
        "wait-7d": "500 ms",
        "gpu-24h": "0 ms",
        "gpu-7d": "0 ms",
    }
    assert usage_in_row(body, "alice")["requests-7d"] == "0"


def test_a_shared_key_shows_the_end_users_behind_it(admin_client, log, keys):
    busy, idle = keys
    key = {"source": "custom_app", "api_key_id": busy}
    log(1, **key, end_user="alice", prompt_tokens=10, completion_tokens=100)
    log(2, **key, end_user="alice", prompt_tokens=1, completion_tokens=1)
    log(3, **key, end_user="bob", prompt_tokens=5, completion_tokens=5)
    log(24 * 10, **key, end_user="carol")  # older than the week
    log(1, **key)  # the key itself, no end user
    body = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    [cell] = re.findall(r"<td>busy<span[^>]*data-end-users[^>]*>[^<]*</span>", body)
    assert "2 end users (7 d)" in cell and "alice: 2 requests, 112 tokens; bob: 1 requests, 10 tokens" in cell
    assert "carol" not in body
    assert usage_in_row(body, "busy")["requests-24h"] == "4"
    assert "<td>idle</td>" in body  # a key without end users shows none


def test_gpu_time_shows_for_keys_whitelist_entries_and_users(admin_client, app, log, keys, bob):
    # docs/contract.md §13: GPU time wherever usage shows, 24 h and 7 d.
    busy, _ = keys
    with app.app_context():
        entry = WhitelistEntry(ip="10.0.0.0/24", label="build farm", priority=1)
        db.session.add(entry)
        db.session.commit()
        entry_id = entry.id
    log(1, source="custom_app", api_key_id=busy, gpu_ms=1500)
    log(50, source="custom_app", api_key_id=busy, gpu_ms=4000)
    log(2, source="direct_api", whitelist_entry_id=entry_id, gpu_ms=125_000)
    log(3, source="web_chat", user_id=bob.id, gpu_ms=800, status=499, stage="streaming")
    keys_page = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    assert {k: v for k, v in usage_in_row(keys_page, "busy").items() if k.startswith("gpu")} == {
        "gpu-24h": "1.5 s",
        "gpu-7d": "5.5 s",
    }
    entries = admin_client.get("/admin/whitelist/").get_data(as_text=True)
    [row] = [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", entries, re.S) if "build farm" in r]
    cells = dict(USAGE.findall(row))
    assert (cells["requests-24h"], cells["gpu-24h"], cells["gpu-7d"]) == ("1", "2 min 05 s", "2 min 05 s")
    users = admin_client.get("/admin/users/").get_data(as_text=True)
    assert usage_in_row(users, "bob")["gpu-24h"] == "800 ms"
