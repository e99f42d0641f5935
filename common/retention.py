"""Request-log retention: rows older than ``LOG_RETENTION_DAYS`` are deleted, in batches.

One statement deletes at most ``batch`` rows (the oldest first, found through the
``created_at`` index), so a prune of millions of rows never holds a long write lock
that would stall the request-log writer. Several gateway instances pruning the same
database at once is harmless: a row already deleted is simply not found again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from common.models import RequestLog, utcnow

PRUNE_BATCH = 5_000


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The time before which request-log rows are pruned."""
    return (now or utcnow()) - timedelta(days=days)


def oldest_row_statement(cutoff: datetime) -> sa.Select:
    """One row created before ``cutoff``, if any (a read: no write lock when there is nothing to prune)."""
    return sa.select(RequestLog.id).where(RequestLog.created_at < cutoff).limit(1)


def prune_batch_statement(cutoff: datetime, batch: int = PRUNE_BATCH) -> sa.Delete:
    """Delete up to ``batch`` rows created before ``cutoff``."""
    oldest = sa.select(RequestLog.id).where(RequestLog.created_at < cutoff).limit(batch)
    # A subquery by id: PostgreSQL and SQLite both lack DELETE … LIMIT by default.
    return sa.delete(RequestLog).where(RequestLog.id.in_(oldest.scalar_subquery()))


def prune_requests(engine: sa.Engine, cutoff: datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete every row created before ``cutoff``, one transaction per batch; returns how many."""
    removed = 0
    while True:
        with engine.begin() as connection:
            count = connection.execute(prune_batch_statement(cutoff, batch)).rowcount
        removed += count
        if count < batch:
            return removed
