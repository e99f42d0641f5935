"""Reading the request log: usage per key and user, the filtered requests page, safe CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from common.db import make_sessionmaker, make_sync_engine
from common.models import APIKey, RequestLog, User
from common.usage import (
    CSV_COLUMNS,
    MAX_PER_PAGE,
    RequestFilters,
    Usage,
    csv_rows,
    named_rows,
    request_page,
    safe_cell,
    usage_by_key,
    usage_by_user,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(settings):
    engine = make_sync_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def people(session):
    """Alice (a user) and two API keys, ci-bot and etl."""
    alice = User(username="alice", password_hash="x")
    ci_bot = APIKey(name="ci-bot", key_hash="a" * 64, prefix="sdk_aaaa", priority=2)
    etl = APIKey(name="etl", key_hash="b" * 64, prefix="sdk_bbbb", priority=5)
    session.add_all([alice, ci_bot, etl])
    session.commit()
    return alice, ci_bot, etl


_numbers = iter(range(10**9))


def log_request(session, minutes_ago: float = 0, **fields) -> RequestLog:
    values = {
        "request_id": f"req-{next(_numbers)}",
        "created_at": NOW - timedelta(minutes=minutes_ago),
        "source": "direct_api",
        "method": "POST",
        "endpoint": "/api/chat",
        "model": "llama3.2",
        "status": 200,
    }
    values.update(fields)
    row = RequestLog(**values)
    session.add(row)
    session.commit()
    return row


class TestUsage:
    def test_it_sums_requests_tokens_and_waits_per_key(self, session, people):
        _, ci_bot, etl = people
        for prompt, completion, wait in ((10, 100, 1000), (5, 50, 3000)):
            log_request(
                session,
                source="custom_app",
                api_key_id=ci_bot.id,
                prompt_tokens=prompt,
                completion_tokens=completion,
                queue_wait_ms=wait,
            )
        log_request(session, source="custom_app", api_key_id=ci_bot.id, status=401)  # never dispatched
        log_request(session, source="custom_app", api_key_id=etl.id, prompt_tokens=7)
        log_request(session, prompt_tokens=999)  # a whitelisted client: no key
        assert usage_by_key(session) == {
            ci_bot.id: Usage(requests=3, prompt_tokens=15, completion_tokens=150, average_wait_ms=2000.0),
            etl.id: Usage(requests=1, prompt_tokens=7, completion_tokens=0, average_wait_ms=None),
        }

    def test_it_counts_only_requests_since_the_given_time(self, session, people):
        _, ci_bot, _ = people
        log_request(session, minutes_ago=120, api_key_id=ci_bot.id, completion_tokens=1000)
        log_request(session, minutes_ago=30, api_key_id=ci_bot.id, completion_tokens=20)
        log_request(session, minutes_ago=10, api_key_id=ci_bot.id, completion_tokens=30)
        since = NOW - timedelta(hours=1)
        assert usage_by_key(session, since)[ci_bot.id] == Usage(2, 0, 50, None)
        assert usage_by_key(session, NOW + timedelta(minutes=1)) == {}

    def test_it_sums_usage_per_user(self, session, people):
        alice, ci_bot, _ = people
        for completion, wait in ((4, 500), (6, 1500)):
            log_request(
                session,
                source="web_chat",
                user_id=alice.id,
                prompt_tokens=3,
                completion_tokens=completion,
                queue_wait_ms=wait,
            )
        log_request(session, source="custom_app", api_key_id=ci_bot.id, completion_tokens=77)
        assert usage_by_user(session) == {alice.id: Usage(2, 6, 10, 1000.0)}


class TestRequestPage:
    def test_it_pages_newest_first_with_the_total(self, session):
        for minutes_ago in (3, 0, 11, 7, 1, 10, 2, 9, 4, 8, 5, 6):  # not in time order
            log_request(session, minutes_ago=minutes_ago, request_id=f"m{minutes_ago:02d}")
        first = request_page(session, page=1, per_page=5)
        assert [row.request_id for row in first.rows] == ["m00", "m01", "m02", "m03", "m04"]
        assert (first.total, first.pages) == (12, 3)
        last = request_page(session, page=3, per_page=5)
        assert [row.request_id for row in last.rows] == ["m10", "m11"]
        assert request_page(session, page=4, per_page=5).rows == []

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            (RequestFilters(source="web_chat"), {"chat"}),
            (RequestFilters(status=499), {"gone"}),
            (RequestFilters(model="qwen2.5"), {"qwen"}),
            (RequestFilters(source="custom_app", status=200), {"key"}),
            (RequestFilters(since=NOW - timedelta(minutes=45)), {"chat", "gone", "qwen", "key"}),
            (RequestFilters(until=NOW - timedelta(minutes=45)), {"old"}),
        ],
    )
    def test_it_filters_the_rows(self, session, people, filters, expected):
        alice, ci_bot, _ = people
        log_request(session, request_id="chat", source="web_chat", user_id=alice.id)
        log_request(session, request_id="gone", status=499, stage="streaming")
        log_request(session, request_id="qwen", model="qwen2.5")
        log_request(session, request_id="key", source="custom_app", api_key_id=ci_bot.id)
        log_request(session, request_id="old", minutes_ago=60)
        page = request_page(session, filters=filters)
        assert {row.request_id for row in page.rows} == expected
        assert page.total == len(expected)

    def test_it_filters_by_key_and_by_user(self, session, people):
        alice, ci_bot, etl = people
        log_request(session, request_id="alice", user_id=alice.id)
        log_request(session, request_id="ci", api_key_id=ci_bot.id)
        log_request(session, request_id="etl", api_key_id=etl.id)
        by_key = request_page(session, filters=RequestFilters(api_key_id=etl.id))
        by_user = request_page(session, filters=RequestFilters(user_id=alice.id))
        assert [row.request_id for row in by_key.rows] == ["etl"]
        assert [row.request_id for row in by_user.rows] == ["alice"]

    def test_it_keeps_page_and_page_size_in_range(self, session):
        log_request(session)
        page = request_page(session, page=-3, per_page=10**6)
        assert (page.page, page.per_page, page.total) == (1, MAX_PER_PAGE, 1)
        assert request_page(session, per_page=0).per_page == 1

    def test_an_empty_log_is_one_empty_page(self, session):
        page = request_page(session)
        assert (page.rows, page.total, page.pages) == ([], 0, 1)


class TestCsv:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("llama3.2", "llama3.2"),
            ("a=b", "a=b"),
            (None, ""),
            (200, "200"),
            (NOW, "2024-05-01T12:00:00Z"),
        ],
    )
    def test_a_cell_never_starts_a_formula(self, value, expected):
        assert safe_cell(value) == expected

    def test_it_writes_a_header_and_one_safe_line_per_row(self, session):
        log_request(
            session,
            request_id="evil",
            model="=cmd|' /C calc'!A0",
            error="@risk",
            queue_wait_ms=12.5,
            prompt_tokens=3,
            client_ip="10.0.0.5",
        )
        rows = list(csv_rows(named_rows(session, request_page(session).rows)))
        assert rows[0] == list(CSV_COLUMNS)
        line = dict(zip(CSV_COLUMNS, rows[1], strict=True))
        assert line["time"] == "2024-05-01T12:00:00Z"
        assert line["model"] == "'=cmd|' /C calc'!A0"
        assert line["error"] == "'@risk"
        # Milliseconds are rounded in the CSV (a spreadsheet needs no microseconds).
        assert (line["queue_wait_ms"], line["prompt_tokens"], line["completion_tokens"]) == ("12", "3", "")
        out = io.StringIO()
        csv.writer(out).writerows(csv_rows(named_rows(session, request_page(session).rows)))
        assert list(csv.reader(io.StringIO(out.getvalue())))[1] == rows[1]
