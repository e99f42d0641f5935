"""What one gateway process owns, made at start-up and closed at shut-down.

The upstream client, the backend pool, the scheduler, the identity cache and
the request-log writer live on a :class:`Gateway` kept in ``app.extensions``;
nothing is module-level, so every test app gets its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from quart import Quart, current_app
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import make_async_engine, make_async_sessionmaker
from common.settings import Settings
from common.sources import ClassificationError
from proxy_app.backends import BackendPool, BackendState
from proxy_app.classify import Principal, identify
from proxy_app.identity_cache import REFRESH_INTERVAL, IdentityCache, Snapshot
from proxy_app.metrics import Metrics
from proxy_app.scheduler import LocalScheduler, Revoked, Scheduler
from proxy_app.stats import LiveStats, RequestLogWriter, RequestRecord
from proxy_app.upstream import Upstream, make_client, make_transport

log = logging.getLogger("seadragon.gateway")

EXTENSION = "seadragon_gateway"
CLEANUP_KEY = "seadragon.cleanup"
HEALTH_INTERVAL = 5.0  # seconds between backend health checks


class Gateway:
    """The process-wide state: client, backends, queue, identities, measurements."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        identity_refresh: float = REFRESH_INTERVAL,
        health_interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.health_interval = health_interval
        self.cache = IdentityCache(interval=identity_refresh)
        self.live = LiveStats()
        # Queued requests by id, each with the Principal it can be re-classified from.
        self.waiting_principals: dict[str, Principal] = {}
        self.engine: AsyncEngine | None = None
        self.writer: RequestLogWriter | None = None
        self.client: httpx.AsyncClient | None = None
        self.pool: BackendPool | None = None
        self.scheduler: Scheduler | None = None
        self.upstream: Upstream | None = None
        self.metrics: Metrics | None = None
        self.redis: Any = None
        self._sampler: asyncio.Task | None = None

    async def start(self) -> None:
        """Make the client and engine, start health checks, identities, the log writer."""
        self.engine = make_async_engine(self.settings.database_url)
        self.writer = RequestLogWriter(make_async_sessionmaker(self.engine))
        transport = make_transport(self.transport)
        self.client = make_client(self.settings, transport)
        self.pool = BackendPool(self.settings.backends, self.client, interval=self.health_interval)
        self.scheduler = self._make_scheduler(self.pool)
        self.upstream = Upstream(transport, self.settings, self._connect_failed)
        self.metrics = Metrics(self.stats_snapshot, self.writer, self.upstream.open_connections)
        await self.scheduler.start()
        await self.cache.start(self.engine)
        self.cache.on_refresh(self._recheck_waiting)
        await self.writer.start()
        self._sampler = asyncio.create_task(self._sample_every_second())

    def _make_scheduler(self, pool: BackendPool) -> Scheduler:
        if not self.settings.redis_url:
            return LocalScheduler(self.settings, pool)
        # Scale-out: every instance shares one queue and one set of slots.
        from redis.asyncio import Redis

        from proxy_app.scheduler_redis import RedisScheduler

        self.redis = Redis.from_url(self.settings.redis_url)
        return RedisScheduler(self.settings, pool, self.redis)

    async def close(self) -> None:
        """Fail the waiting, stop the loops, flush the log and usage, close the clients."""
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.writer is not None:
            await self.writer.close()
        await self.cache.close()
        if self.engine is not None:
            await self.engine.dispose()
        if self.client is not None:
            await self.client.aclose()

    def finish(self, record: RequestRecord, *, live: bool) -> None:
        """A request ended: one request-log row, and (for generations) the live numbers."""
        if self.writer is not None:
            self.writer.record(record)
        if self.metrics is not None:
            self.metrics.observe(record)
        if live:
            self.live.observe(record)

    def stats_snapshot(self) -> dict:
        """The scheduler's queue and slot numbers."""
        assert self.scheduler is not None
        return self.scheduler.snapshot()

    def healthy_backends(self) -> list[BackendState]:
        """Backends that answered their last health check."""
        assert self.pool is not None
        return [backend for backend in self.pool.backends if backend.healthy]

    def _connect_failed(self, url: str, error: str) -> None:
        # Take the backend out of rotation now rather than at the next health check.
        assert self.pool is not None
        for backend in self.pool.backends:
            if backend.url == url:
                self.pool.mark_failed(backend, error)

    def _recheck_waiting(self, snapshot: Snapshot) -> None:
        """Refuse queued requests whose key, whitelist entry or login is gone."""
        assert self.scheduler is not None
        for ticket in self.scheduler.waiting():
            principal = self.waiting_principals.get(ticket.request_id)
            if principal is None:
                continue
            try:
                identify(principal, snapshot, self.settings)
            except ClassificationError as exc:
                self.scheduler.cancel(ticket.request_id, Revoked(exc.message, status=exc.status))

    async def _sample_every_second(self) -> None:
        # The dashboard's queue history is drawn from these real samples.
        while True:
            await asyncio.sleep(1.0)
            self.live.sample(self.stats_snapshot())


def gateway() -> Gateway:
    """The gateway of the current app."""
    return current_app.extensions[EXTENSION]


def on_request_end(scope: MutableMapping[str, Any], closer: Callable[[], Awaitable[None]]) -> None:
    """Run ``closer`` once the request is over, however it ended (even if the client left)."""
    scope.setdefault(CLEANUP_KEY, []).append(closer)


class CleanupMiddleware:
    """ASGI wrapper that runs the request's closers after the app is done with it.

    Quart cancels a handler whose client left, possibly before a response body
    generator ever started — its ``finally`` would then never run. Closers
    registered with :func:`on_request_end` run here regardless.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            for closer in reversed(scope.pop(CLEANUP_KEY, [])):
                try:
                    await closer()
                except Exception:
                    log.exception("cleaning up a request failed")


def install(app: Quart, gw: Gateway) -> None:
    """Attach the gateway to the app's lifecycle."""
    app.extensions[EXTENSION] = gw
    app.asgi_app = CleanupMiddleware(app.asgi_app)  # type: ignore[method-assign]

    @app.while_serving
    async def lifespan():
        await gw.start()
        try:
            yield
        finally:
            await gw.close()
