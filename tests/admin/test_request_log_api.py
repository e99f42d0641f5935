"""The request log for scripts (contract §6): JSON with filters and cursor paging; CSV with a bearer token."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from admin_app.extensions import db
from common.models import RequestLog, iso, utcnow
from common.usage import ROW_FIELDS
from tests.admin.helpers import bearer_token


def ids(api, query: str = "") -> list[str]:
    response = api.get(f"/api/admin/requests?{query}")
    assert response.status_code == 200, response.get_json()
    return [row["request_id"] for row in response.get_json()["requests"]]


def test_rows_have_the_contract_shape_and_name_who_sent_them(api, log, people):
    log(3, source="custom_app", api_key_id=people["key"], client_ip="10.0.0.9")
    log(2, whitelist_entry_id=people["entry"])
    log(
        1,
        source="web_chat",
        user_id=people["alice"],
        status=499,
        stage="streaming",
        queue_wait_ms=12.25,
        ttfb_ms=80.5,
        duration_ms=1500.75,
        prompt_tokens=11,
        completion_tokens=22,
        error="client went away",
    )
    body = api.get("/api/admin/requests").get_json()
    assert set(body) == {"requests", "next_cursor"} and body["next_cursor"] is None
    rows = body["requests"]
    assert all(tuple(row) == ROW_FIELDS or set(row) == set(ROW_FIELDS) for row in rows)
    assert [row["who"] for row in rows] == ["alice", "build farm", "ci-bot"]
    chat = rows[0]
    assert chat["status"] == 499 and chat["stage"] == "streaming" and chat["error"] == "client went away"
    assert (chat["queue_wait_ms"], chat["ttfb_ms"], chat["duration_ms"]) == (12.25, 80.5, 1500.75)
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (11, 22)
    assert chat["time"].endswith("Z") and chat["endpoint"] == "/api/chat" and chat["model"] == "llama3.2"
    assert rows[2]["client_ip"] == "10.0.0.9" and rows[2]["source"] == "custom_app"


def test_every_filter(api, log, people):
    now = utcnow()
    old = log(3600, status=200)
    key = log(30, source="custom_app", api_key_id=people["key"], status=404, endpoint="/v1/chat/completions")
    chat = log(
        20, source="web_chat", user_id=people["alice"], status=503, model="qwen2.5", client_ip="10.0.0.7"
    )
    tags = log(10, endpoint="/api/tags", model=None, status=200, request_id="abc-123")
    assert ids(api, "source=web_chat") == [chat]
    assert ids(api, f"key={people['key']}") == [key]
    assert ids(api, f"user={people['alice']}") == [chat] == ids(api, "user=alice") == ids(api, "user=ALICE")
    assert ids(api, "status=404") == [key]
    assert ids(api, "status=5xx") == [chat] and ids(api, "status=4XX") == [key]
    assert ids(api, "status=2xx") == [tags, old]
    assert ids(api, "model=qwen2.5") == [chat]
    assert ids(api, "endpoint=/api/tags") == [tags]
    assert ids(api, "ip=10.0.0.7") == [chat] == ids(api, "ip=::ffff:10.0.0.7")
    assert ids(api, "request_id=abc-123") == [tags]
    since = iso(now - timedelta(minutes=5))
    assert ids(api, f"since={since}") == [tags, chat, key]
    assert ids(api, f"until={since}") == [old]
    assert ids(api, f"since={since}&status=2xx") == [tags]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=abc", "status"),
        ("status=999", "status"),
        ("status=6xx", "status"),
        ("source=martians", "source"),
        ("key=12345", "key"),
        ("key=ci-bot", "key"),
        ("user=nobody", "user"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("ip=10.0.0.300", "ip"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("model=" + "x" * 201, "model"),
    ],
)
def test_a_bad_filter_is_400_naming_it(api, log, query, field):
    response = api.get(f"/api/admin/requests?{query}")
    assert response.status_code == 400 and field in response.get_json()["error"]


def test_cursor_paging_walks_the_whole_log_once_even_as_rows_arrive(api, app, log):
    now = utcnow()
    with app.app_context():
        db.session.execute(
            sa.insert(RequestLog),
            [
                {
                    "request_id": f"bulk-{n:03d}",
                    # Pairs share a timestamp: the cursor must tell them apart by id.
                    "created_at": now - timedelta(seconds=n // 2),
                    "source": "direct_api",
                    "method": "POST",
                    "endpoint": "/api/generate",
                    "status": 200,
                }
                for n in range(25)
            ],
        )
        db.session.commit()
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=10" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(f"/api/admin/requests?{query}").get_json()
        seen += [row["request_id"] for row in body["requests"]]
        pages += 1
        if pages == 1:
            log(0)  # a new request arrives between pages: it must not shift the next page
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 25 == len(set(seen))
    assert set(seen) == {f"bulk-{n:03d}" for n in range(25)}


def test_the_limit_is_at_most_500(api, app):
    with app.app_context():
        rows = [
            {
                "request_id": f"r{n}",
                "method": "GET",
                "endpoint": "/api/tags",
                "status": 200,
                "created_at": utcnow(),
            }
            for n in range(501)
        ]
        db.session.execute(sa.insert(RequestLog), rows)
        db.session.commit()
    body = api.get("/api/admin/requests?limit=500").get_json()
    assert len(body["requests"]) == 500 and body["next_cursor"] is not None
    assert len(api.get("/api/admin/requests").get_json()["requests"]) == 100  # the default


def test_the_csv_takes_a_bearer_token_the_same_filters_and_shows_names(client, alice, log, people):
    log(2, source="custom_app", api_key_id=people["key"], queue_wait_ms=12.6, duration_ms=1500.4)
    log(1, source="direct_api")
    token = bearer_token(client, "alice")
    fresh = client.application.test_client()  # no session cookie: a script
    response = fresh.get(
        "/admin/requests.csv?source=custom_app", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1
    assert (
        rows[0]["who"] == "ci-bot" and rows[0]["queue_wait_ms"] == "13" and rows[0]["duration_ms"] == "1500"
    )
    bad = fresh.get("/admin/requests.csv?status=6xx", headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and "status" in bad.get_data(as_text=True)


def test_the_csv_refuses_a_bad_or_non_admin_bearer_token(client, alice, bob):
    fresh = client.application.test_client()
    response = fresh.get("/admin/requests.csv", headers={"Authorization": "Bearer sda_nope"})
    assert response.status_code == 401 and "error" in response.get_json()
    token = bearer_token(client, "bob")
    assert fresh.get("/admin/requests.csv", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    # A bearer token opens the export only: the pages still want a signed-in admin.
    token = bearer_token(client, "alice")
    page = fresh.get("/admin/requests", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 302 and page.location.startswith("/auth/login")


def test_the_page_filters_by_status_class_endpoint_ip_and_request_id(admin_client, log):
    wanted = log(5, status=502, endpoint="/v1/messages", client_ip="10.1.2.3", request_id="find-me")
    log(4, status=200)
    for query in ("status=5xx", "endpoint=/v1/messages", "ip=10.1.2.3", "request_id=find-me"):
        body = admin_client.get(f"/admin/requests?{query}").get_data(as_text=True)
        assert f'data-request-id="{wanted}"' in body and body.count("data-request-id=") == 1, query
    response = admin_client.get("/admin/requests?ip=nope")
    assert response.status_code == 400 and 'class="field-error"' in response.get_data(as_text=True)


def test_who_names_the_end_user_behind_a_shared_key(api, admin_client, log, people):
    shared = log(2, source="custom_app", api_key_id=people["key"], end_user="alice@example.org")
    log(1, source="custom_app", api_key_id=people["key"])
    rows = api.get("/api/admin/requests").get_json()["requests"]
    assert [row["who"] for row in rows] == ["ci-bot", "ci-bot/end-user:alice@example.org"]
    page = admin_client.get("/admin/requests").get_data(as_text=True)
    cells = page.split("data-request-id=")[1:]
    assert shared in cells[1] and "for alice@example.org" in cells[1] and "for alice" not in cells[0]


def test_rows_carry_gpu_time_in_the_json_the_csv_and_the_detail_view(
    api, client, admin_client, alice, log, people
):
    # docs/contract.md §13: gpu_ms (null for a request that never held a slot) and load_ms.
    served = log(2, source="custom_app", api_key_id=people["key"], gpu_ms=2350.6, load_ms=812.4)
    log(1, source="custom_app", api_key_id=people["key"], status=429)
    rows = api.get("/api/admin/requests").get_json()["requests"]
    assert [(row["gpu_ms"], row["load_ms"]) for row in rows] == [(None, None), (2350.6, 812.4)]
    token = bearer_token(client, "alice")
    fresh = client.application.test_client()
    exported = fresh.get("/admin/requests.csv", headers={"Authorization": f"Bearer {token}"})
    cells = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(row["gpu_ms"], row["load_ms"]) for row in cells] == [("", ""), ("2351", "812")]
    page = admin_client.get(f"/admin/requests/{served}").get_data(as_text=True)
    assert 'data-field="gpu_ms">2.4 s<' in page and 'data-field="load_ms">812 ms<' in page
