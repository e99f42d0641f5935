"""Refusals are collapsed per caller (identity, else IP) and minute (README "Request log"), exact in total."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from common.models import APIKey
from common.security import hash_secret
from common.settings import ConfigError, Settings
from proxy_app import create_app
from proxy_app.refusal_log import RefusalLog
from proxy_app.request_log import RequestRecord
from tests.conftest import settings_env
from tests.proxy.fake_ollama import call, chat_request
from tests.proxy.support import PASSWORD, AdminApp, log_rows

ATTACKER = "198.51.100.7"
WHITELISTED_IP = "10.0.0.5"
FLOOD = 4_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_020.0  # 20 s into a minute

    def __call__(self) -> float:
        return self.now


def refusal(number: int, ip: str | None = ATTACKER, status: int = 401, **fields) -> RequestRecord:
    return RequestRecord(
        request_id=f"r{number}", method="POST", endpoint="/api/chat", status=status, client_ip=ip, **fields
    )


def make_log(max_ips: int = 100) -> tuple[RefusalLog, list[RequestRecord], Clock]:
    rows: list[RequestRecord] = []
    clock = Clock()

    class Sink:
        def record(self, rec: RequestRecord) -> None:
            rows.append(rec)

    return RefusalLog(Sink(), max_ips=max_ips, clock=clock), rows, clock


def test_the_first_refusal_of_a_minute_is_written_at_once_and_the_rest_as_one_counted_row():
    log, rows, clock = make_log()
    for number in range(FLOOD):
        log.record(refusal(number))
    assert [(row.request_id, row.repeats) for row in rows] == [("r0", 1)]
    log.roll()  # the same minute: nothing more yet
    assert len(rows) == 1
    clock.now += 60
    log.roll()
    assert [(row.request_id, row.client_ip, row.repeats) for row in rows] == [
        ("r0", ATTACKER, 1),
        (f"r{FLOOD - 1}", ATTACKER, FLOOD - 1),
    ]


def test_each_status_of_an_ip_is_counted_apart_and_a_new_minute_starts_afresh():
    log, rows, clock = make_log()
    for number in range(3):
        log.record(refusal(number, status=401))
        log.record(refusal(100 + number, status=404))
    clock.now += 60
    log.record(refusal(200, status=401))  # a new minute: written at once, and the old minute flushed
    counted = sorted((row.status, row.repeats) for row in rows)
    assert counted == [(401, 1), (401, 1), (401, 2), (404, 1), (404, 2)]
    assert rows[-1].request_id == "r200"


def test_served_requests_and_clients_that_left_always_get_their_own_row():
    log, rows, _ = make_log()
    for number in range(5):
        log.record(refusal(10 + number, status=499))
        log.record(refusal(20 + number, status=200, source="direct_api"))
        log.record(refusal(30 + number, status=499, source="custom_app", api_key_id=1))
    assert len(rows) == 15 and all(row.repeats == 1 for row in rows)


def test_an_identified_callers_refusals_collapse_per_identity_whatever_end_user_or_ip():
    # docs/contract.md §16: as anonymous ones do; rotating the end-user header or the IP makes no rows.
    log, rows, clock = make_log()
    for number in range(5):
        key_one = {"source": "custom_app", "api_key_id": 1, "end_user": f"user-{number}"}
        log.record(refusal(number, ip=f"10.1.0.{number}", status=429, **key_one))
        log.record(refusal(10 + number, status=429, source="custom_app", api_key_id=2))
        log.record(refusal(20 + number, status=403, source="custom_app", api_key_id=1))
    assert [(row.request_id, row.repeats) for row in rows] == [("r0", 1), ("r10", 1), ("r20", 1)]
    clock.now += 60
    log.roll()
    assert [(row.request_id, row.api_key_id, row.status, row.repeats) for row in rows[3:]] == [
        ("r4", 1, 429, 4),
        ("r14", 2, 429, 4),
        ("r24", 1, 403, 4),
    ]
    assert rows[3].client_ip == "10.1.0.4" and rows[3].end_user == "user-4"  # the last one's, as it was
    assert sum(row.repeats for row in rows) == 15


def test_ips_over_the_cap_are_counted_together_under_an_empty_client_ip():
    log, rows, clock = make_log(max_ips=2)
    ips = [f"203.0.113.{n}" for n in range(10)]
    for round_ in range(3):
        for number, ip in enumerate(ips):
            log.record(refusal(round_ * 100 + number, ip=ip))
    assert log.tracked_ips == 3  # two IPs and the overflow
    clock.now += 60
    log.flush()
    assert sum(row.repeats for row in rows) == 30
    by_ip: dict = {}
    for row in rows:
        by_ip[row.client_ip] = by_ip.get(row.client_ip, 0) + row.repeats
    assert by_ip == {ips[0]: 3, ips[1]: 3, None: 24}
    assert len(rows) == 5  # two first rows, two counted rows, one overflow row


def test_the_ip_cap_is_a_setting_with_a_default(tmp_path):
    assert Settings.from_env(settings_env(tmp_path)).refusal_log_max_ips == 1000
    assert Settings.from_env(settings_env(tmp_path, REFUSAL_LOG_MAX_IPS="5")).refusal_log_max_ips == 5
    with pytest.raises(ConfigError, match="SEADRAGON_REFUSAL_LOG_MAX_IPS: must be between 1 and"):
        Settings.from_env(settings_env(tmp_path, REFUSAL_LOG_MAX_IPS="0"))


def total(metrics_text: str, status: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "seadragon_requests_total" and sample.labels["status"] == status:
                return sample.value
    return 0.0


@pytest.mark.costly  # a flood of requests
async def test_a_flood_of_unauthenticated_requests_leaves_a_handful_of_rows_that_count_it_all(
    settings_factory, fake_ollama, accounts
):
    settings = settings_factory(METRICS_TOKEN="scrape-token-123")
    db = accounts(settings)
    db.whitelist(WHITELISTED_IP)
    app = create_app(settings=settings, transport=httpx.MockTransport(fake_ollama))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for _ in range(FLOOD):
            response = await call(client, "POST", "/api/chat", ATTACKER, json={"model": "m"})
            assert response.status_code == 401
        for _ in range(3):
            assert (await chat_request(client, WHITELISTED_IP)).status_code == 200
        metrics = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
        assert total(await metrics.get_data(as_text=True), "401") == FLOOD
    rows = log_rows(settings)  # flushed at shut-down
    refused = [row for row in rows if row.status == 401]
    # Two rows a minute: the first refusal, then one counting the rest (four if the flood straddled a minute).
    assert 2 <= len(refused) <= 4
    assert {row.client_ip for row in refused} == {ATTACKER}
    assert sum(row.repeats for row in refused) == FLOOD
    served = [row for row in rows if row.status == 200]
    assert len(served) == 3 and all(row.repeats == 1 for row in served)

    db.user("root", admin=True)
    admin = AdminApp(settings).app.test_client()
    admin.post("/auth/login", data={"username": "root", "password": PASSWORD})
    page = admin.get("/admin/requests", query_string={"status": "401"}).get_data(as_text=True)
    assert all(f"×{row.repeats}<" in page for row in refused if row.repeats > 1)


@pytest.mark.costly  # a flood of requests
async def test_a_key_refused_again_and_again_leaves_a_handful_of_rows_that_count_it_all(
    settings_factory, fake_ollama, accounts
):
    settings = settings_factory()
    db = accounts(settings)
    secret = db.key("flooder")
    with db.sessions.begin() as session:
        session.execute(
            sa.update(APIKey).where(APIKey.key_hash == hash_secret(secret)).values(models=["qwen*"])
        )
    app = create_app(settings=settings, transport=httpx.MockTransport(fake_ollama))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for _ in range(300):
            headers = {"X-API-Key": secret}
            response = await call(
                client, "POST", "/api/chat", ATTACKER, headers=headers, json={"model": "mistral"}
            )
            assert response.status_code == 403
    refused = [row for row in log_rows(settings) if row.status == 403]
    assert 2 <= len(refused) <= 4  # the first, then one row for the rest (twice if it straddled a minute)
    assert all(row.api_key_id is not None and row.source == "custom_app" for row in refused)
    assert sum(row.repeats for row in refused) == 300
