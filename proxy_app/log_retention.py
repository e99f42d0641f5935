"""The gateway prunes request-log rows older than ``LOG_RETENTION_DAYS``, at start-up and then hourly.

Runs as one background task of the :class:`~proxy_app.gateway.Gateway`, never on a
request's path; each batch is its own short transaction (``common/retention.py``),
with a pause between batches so the request-log writer gets the database in between.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from common.retention import PRUNE_BATCH, oldest_row_statement, prune_batch_statement, retention_cutoff

log = logging.getLogger("seadragon.retention")

PRUNE_INTERVAL = 3600.0  # seconds between prunes after the one at start-up
BATCH_PAUSE = 0.05  # seconds between two batches of one prune


async def prune_old_requests(engine: AsyncEngine, days: int, batch: int = PRUNE_BATCH) -> int:
    """Delete the rows older than ``days``, batch by batch; returns how many went."""
    cutoff = retention_cutoff(days)
    removed = 0
    while True:
        # Usually nothing is old enough: find that out with a read, never taking SQLite's write lock.
        async with engine.connect() as connection:
            if (await connection.execute(oldest_row_statement(cutoff))).first() is None:
                return removed
        async with engine.begin() as connection:
            count = (await connection.execute(prune_batch_statement(cutoff, batch))).rowcount
        removed += count
        if count < batch:
            return removed
        await asyncio.sleep(BATCH_PAUSE)


async def prune_periodically(engine: AsyncEngine, days: int, interval: float = PRUNE_INTERVAL) -> None:
    """Prune now and every ``interval`` seconds until cancelled; a failure waits for the next round."""
    while True:
        try:
            removed = await prune_old_requests(engine, days)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be away: the log must not stop the gateway
            log.warning("request log: pruning rows older than %d days failed: %r", days, exc)
        else:
            if removed:
                log.info("request log: pruned %d rows older than %d days", removed, days)
        await asyncio.sleep(interval)
