"""Request-log retention (LOG_RETENTION_DAYS, README "Request log"): the gateway prunes old rows itself."""

from __future__ import annotations

import httpx

from common.db import make_sync_engine
from common.retention import prune_requests, retention_cutoff
from proxy_app import create_app
from tests.proxy.rows_by_age import add_rows
from tests.proxy.support import log_rows
from tests.waiting import await_until


def ages(settings) -> list[int]:
    return sorted(int(row.request_id.split("-")[1].split(".")[0]) for row in log_rows(settings))


async def test_the_gateway_prunes_old_rows_at_start_up_and_then_periodically(settings_factory, fake_ollama):
    settings = settings_factory(LOG_RETENTION_DAYS=30)
    add_rows(settings, 400, 31, 29, 1)
    app = create_app(
        {"SEADRAGON_PRUNE_INTERVAL": 0.2}, settings=settings, transport=httpx.MockTransport(fake_ollama)
    )
    async with app.test_app():
        await await_until(lambda: ages(settings) == [1, 29])
        add_rows(settings, 45, 2)  # while serving: gone at the next round
        await await_until(lambda: ages(settings) == [1, 2, 29])


def test_pruning_goes_batch_by_batch_and_counts_every_row(settings):
    add_rows(settings, *([100] * 25), 10)
    engine = make_sync_engine(settings.database_url)
    try:
        assert prune_requests(engine, retention_cutoff(90), batch=7) == 25
        assert prune_requests(engine, retention_cutoff(90), batch=7) == 0  # a second prune finds nothing
    finally:
        engine.dispose()
    assert ages(settings) == [10]
