"""Request-log rows of given ages."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from common.db import make_sync_engine
from common.models import RequestLog, utcnow


def add_rows(settings, *ages_in_days: float) -> None:
    """Rows created that many days ago."""
    engine = make_sync_engine(settings.database_url)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            sa.insert(RequestLog),
            [
                {
                    "request_id": f"aged-{age}-{number}",
                    "created_at": now - timedelta(days=age),
                    "method": "POST",
                    "endpoint": "/api/chat",
                    "status": 200,
                }
                for number, age in enumerate(ages_in_days)
            ],
        )
    engine.dispose()
