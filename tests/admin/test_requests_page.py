"""The requests page (docs/contract.md §6): the request log filtered, paged, and exported as safe CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import sqlalchemy as sa

from admin_app.extensions import db
from common.models import APIKey, RequestLog, User, utcnow
from common.usage import CSV_COLUMNS
from tests.admin.helpers import listed


def test_an_empty_log_says_no_requests_yet(admin_client):
    response = admin_client.get("/admin/requests")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "No requests yet" in body and "Download CSV" not in body


def test_it_lists_requests_newest_first_with_who_sent_them(admin_client, log, people):
    by_key = log(
        30,
        source="custom_app",
        api_key_id=people["key"],
        client_ip="203.0.113.9",
        queue_wait_ms=1500,
        ttfb_ms=1720,
        duration_ms=65_000,
        prompt_tokens=12,
        completion_tokens=340,
    )
    by_ip = log(20, source="direct_api", whitelist_entry_id=people["entry"], client_ip="10.0.0.7")
    left = log(10, source="web_chat", user_id=people["alice"], status=499, stage="streaming", model="qwen2.5")
    response = admin_client.get("/admin/requests")
    assert listed(response) == [left, by_ip, by_key]
    rows = response.get_data(as_text=True).split("data-request-id=")[1:]
    assert "alice" in rows[0] and "499" in rows[0] and "streaming" in rows[0] and "qwen2.5" in rows[0]
    assert "build farm" in rows[1] and "10.0.0.0/24" in rows[1] and "10.0.0.7" in rows[1]
    assert "ci-bot" in rows[2] and "sdk_AbCd" in rows[2] and "203.0.113.9" in rows[2]
    assert "1.5 s" in rows[2] and "1.7 s" in rows[2] and "1 min 05 s" in rows[2] and "12 / 340" in rows[2]


def test_it_filters_by_source_key_user_status_and_model(admin_client, log, people):
    key_ok = log(source="custom_app", api_key_id=people["key"])
    key_404 = log(source="custom_app", api_key_id=people["key"], status=404, model="nope")
    chat = log(source="web_chat", user_id=people["alice"], model="qwen2.5")
    direct = log(source="direct_api", whitelist_entry_id=people["entry"])

    def only(**args) -> set[str]:
        response = admin_client.get("/admin/requests", query_string=args)
        assert response.status_code == 200
        return set(listed(response))

    assert only() == {key_ok, key_404, chat, direct}
    assert only(source="custom_app") == {key_ok, key_404}
    assert only(key=people["key"], status=200) == {key_ok}
    assert only(user=people["alice"]) == {chat}
    assert only(model="qwen2.5") == {chat}
    assert only(status=404) == {key_404}
    assert only(source="direct_api", model="qwen2.5") == set()
    body = admin_client.get("/admin/requests?status=500").get_data(as_text=True)
    assert "No requests match these filters" in body and "4 requests in the log" in body


def test_it_refuses_filters_that_make_no_sense(admin_client, log):
    log()
    for args in ({"status": "abc"}, {"status": "999"}, {"source": "martians"}, {"key": "12345"}):
        response = admin_client.get("/admin/requests", query_string=args)
        assert response.status_code == 400, args
        assert listed(response) == []
        assert 'class="field-error"' in response.get_data(as_text=True)
        assert admin_client.get("/admin/requests.csv", query_string=args).status_code == 400


def test_it_pages_fifty_at_a_time_and_keeps_the_filters(admin_client, app, people):
    now = utcnow()
    with app.app_context():
        db.session.execute(
            sa.insert(RequestLog),
            [
                {
                    "request_id": f"bulk-{n:03d}",
                    "created_at": now - timedelta(seconds=n),
                    "source": "custom_app" if n % 2 else "direct_api",
                    "method": "POST",
                    "endpoint": "/api/generate",
                    "status": 200,
                }
                for n in range(240)
            ],
        )
        db.session.commit()
    first = admin_client.get("/admin/requests?source=custom_app")
    assert listed(first) == [f"bulk-{n:03d}" for n in range(1, 101, 2)]
    body = first.get_data(as_text=True)
    assert "Page 1 of 3" in body and "1–50 of 120 matching" in body
    older = re.search(r'rel="next" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "source=custom_app" in older and "page=2" in older
    assert listed(admin_client.get(older))[0] == "bulk-101"
    last = admin_client.get("/admin/requests?source=custom_app&page=3")
    assert len(listed(last)) == 20 and listed(last)[-1] == "bulk-239"
    # A link past the end (the log was cleaned, a filter changed) shows the last page.
    assert listed(admin_client.get("/admin/requests?source=custom_app&page=99")) == listed(last)


def test_the_csv_export_holds_every_matching_row_and_neutralises_formulas(admin_client, app, log, people):
    for n in range(60):  # more than one page: the export is not paged
        log(100 + n, source="custom_app", api_key_id=people["key"])
    evil = log(
        source="custom_app",
        api_key_id=people["key"],
        model='=HYPERLINK("http://evil.example","x")',
        error="+cmd|' /C calc'!A0",
        client_ip="@SUM(1+1)",
        endpoint="-2+3",
    )
    log(source="direct_api")  # filtered out
    response = admin_client.get(f"/admin/requests.csv?source=custom_app&key={people['key']}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert re.fullmatch(
        r'attachment; filename="seadragon-requests-\d{8}-\d{6}\.csv"', response.headers["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + 61
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["request_id"] == evil
    assert first["model"] == '\'=HYPERLINK("http://evil.example","x")'
    assert (
        first["error"].startswith("'+")
        and first["client_ip"] == "'@SUM(1+1)"
        and first["endpoint"] == "'-2+3"
    )
    assert {row[rows[0].index("source")] for row in rows[1:]} == {"custom_app"}


def test_revoked_keys_and_deleted_users_stay_filterable(admin_client, app, log, people):
    with app.app_context():
        db.session.get(APIKey, people["key"]).is_active = False
        db.session.commit()
        bob = User(username="bob-gone", password_hash="x")
        db.session.add(bob)
        db.session.commit()
        bob_id = bob.id
    mine = log(source="custom_app", api_key_id=people["key"])
    body = admin_client.get("/admin/requests").get_data(as_text=True)
    assert "ci-bot (sdk_AbCd…) — revoked" in body
    assert listed(admin_client.get(f"/admin/requests?key={people['key']}")) == [mine]
    log(source="web_chat", user_id=bob_id)
    with app.app_context():
        db.session.delete(db.session.get(User, bob_id))
        db.session.commit()
    # The row stays (its link is cleared by the foreign key); the page says who is gone.
    assert "removed" in admin_client.get("/admin/requests?source=web_chat").get_data(as_text=True)
