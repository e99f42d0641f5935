"""An in-memory copy of who may come in, refreshed from the database when it changed.

Twice a second one query reads the change marker (a counter that database triggers move on
every write to the tables below, migration ``0013_change_marker``); the tables are read again
only when it moved.

Every request is classified against this snapshot with dictionary lookups of
SHA-256 hashes: no database round trip and no slow hash on the hot path. A
refresh replaces the snapshot whole, so a request never sees half of one.
Key usage (``last_used``) is collected here and written in batches.

The snapshot and the queries that fill it: proxy_app/identity_snapshot.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.models import (
    APIKey,
    utcnow,
)
from common.policies import Policy
from common.security import hash_secret, looks_like_api_key
from common.settings import Settings
from common.sources import Credentials, who_of
from proxy_app.identity_snapshot import (
    Snapshot,
    load_key,
    load_snapshot,
    load_token,
    read_marker,
    with_policy,
)

log = logging.getLogger("seadragon.gateway")

REFRESH_INTERVAL = 0.5  # seconds; revocations and policy changes must bite within 1 s
USAGE_FLUSH_INTERVAL = 5.0  # seconds between batched last_used writes


class IdentityCache:
    """The live snapshot, its refresh loop, and the batched ``last_used`` writer."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        interval: float = REFRESH_INTERVAL,
        flush_interval: float = USAGE_FLUSH_INTERVAL,
    ) -> None:
        self.interval = interval
        self.flush_interval = flush_interval
        self.snapshot = Snapshot()
        self.loaded = False
        self._engine = engine  # the caller's: closed by whoever made it
        self._settings = settings  # WEBCHAT_RPM / WEBCHAT_DAILY_TOKENS: users' default limits
        self._tasks: list[asyncio.Task] = []
        self._listeners: list[Callable[[Snapshot], Awaitable[None] | None]] = []
        self._usage: dict[int, datetime] = {}
        self._failing = False
        self.last_error: str | None = None  # why the last refresh failed (start-up names it)
        self._marker: int | None = None  # the change marker the snapshot was read at
        self.reloads = 0  # snapshots read whole (the marker moved), for tests and measurements

    def on_refresh(self, listener: Callable[[Snapshot], Awaitable[None] | None]) -> None:
        """Call ``listener(snapshot)`` after every successful refresh."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Load once now, then keep refreshing and flushing in the background."""
        await self.refresh()
        self._tasks = [
            asyncio.create_task(self._every(self.interval, self.refresh)),
            asyncio.create_task(self._every(self.flush_interval, self.flush_usage)),
        ]

    async def close(self) -> None:
        """Stop the loops and write the last usage batch (the engine stays the caller's)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.flush_usage()

    async def refresh(self) -> None:
        """Replace the snapshot from the database if its change marker moved; on failure keep the last."""
        try:
            marker = await read_marker(self._engine)
            if self.loaded and marker is not None and marker == self._marker:
                return  # nothing the snapshot holds was written since it was read: one cheap query
            snapshot = await load_snapshot(self._engine, self._settings)
        except sa.exc.SQLAlchemyError as exc:
            if not self._failing:
                log.error("cannot refresh identities from the database: %s", exc)
            self._failing = True
            self.last_error = str(exc).splitlines()[0]
            return
        self._failing = False
        self.last_error = None
        self.snapshot = snapshot
        self.loaded = True
        self._marker = marker
        self.reloads += 1
        for listener in self._listeners:
            result = listener(snapshot)
            if result is not None:
                await result

    async def learn(self, credentials: Credentials) -> None:
        """Look up a key or access token made since the last refresh (one indexed query).

        Without this a script that creates a key or logs in and calls at once
        would be refused for up to one refresh interval.
        """
        key, token = credentials.api_key, credentials.user_token
        try:
            if key is not None and looks_like_api_key(key):
                digest = hash_secret(key)
                if digest not in self.snapshot.keys and (found := await load_key(self._engine, digest)):
                    info, policy = found
                    self.snapshot = replace(
                        self.snapshot,
                        keys={**self.snapshot.keys, digest: info},
                        policies=self._policies_with(who_of(api_key_id=info.id), policy),
                    )
            elif token is not None:
                digest = hash_secret(token)
                if digest not in self.snapshot.tokens and (
                    found_token := await load_token(self._engine, digest, self._settings)
                ):
                    record, user, policy = found_token
                    self.snapshot = replace(
                        self.snapshot,
                        tokens={**self.snapshot.tokens, digest: record},
                        users={**self.snapshot.users, user.id: user},
                        policies=self._policies_with(who_of(user_id=user.id), policy),
                    )
        except sa.exc.SQLAlchemyError as exc:
            log.error("cannot look up a credential: %s", exc)

    def _policies_with(self, who: str | None, policy: Policy) -> dict[str, Policy]:
        policies = dict(self.snapshot.policies)
        with_policy(policies, who, policy)
        return policies

    def touch_key(self, key_id: int) -> None:
        """Note that a key was used now; written with the next batch."""
        self._usage[key_id] = utcnow()

    async def flush_usage(self) -> None:
        """Write the collected ``last_used`` times in one statement batch."""
        if not self._usage:
            return
        batch, self._usage = self._usage, {}
        table = APIKey.__table__
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("key_id"))
            .values(last_used=sa.bindparam("used_at", type_=table.c.last_used.type))
        )
        rows = [{"key_id": key_id, "used_at": when} for key_id, when in batch.items()]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(statement, rows)
        except sa.exc.SQLAlchemyError as exc:
            log.error("cannot record API key usage: %s", exc)
            for key_id, when in batch.items():
                # Put the batch back unless a newer use arrived meanwhile.
                self._usage.setdefault(key_id, when)

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                # A background loop must survive anything one round throws.
                log.exception("background job %s failed", getattr(job, "__name__", job))
