"""What one gateway process owns, made at start-up and closed at shut-down.

The app is created with :class:`GatewayOptions`; when serving starts, the
upstream client, the backend pool, the scheduler, the identity cache and the
request-log writer are built whole into a :class:`Gateway` kept in
``app.extensions`` (nothing is module-level, so every test app gets its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
from quart import Quart, current_app
from sqlalchemy.ext.asyncio import AsyncEngine

from common.access_log import AccessLog
from common.chat import end_orphans
from common.db import make_async_engine, make_async_sessionmaker
from common.settings import Settings
from common.sources import ClassificationError, Identity
from proxy_app.access_line import write_access_line
from proxy_app.backends import BackendPool, BackendState
from proxy_app.chat_runs import ReplyRuns
from proxy_app.classify import Principal, identify
from proxy_app.errors import DEFAULT_RETRY_AFTER, Unavailable
from proxy_app.identity_cache import REFRESH_INTERVAL, IdentityCache
from proxy_app.identity_snapshot import Snapshot
from proxy_app.live_stats import LiveStats
from proxy_app.log_retention import PRUNE_INTERVAL, prune_periodically
from proxy_app.metrics import Metrics
from proxy_app.policy_gate import PolicyGate, make_limits
from proxy_app.refusal_log import RefusalLog
from proxy_app.request_log import RequestLogWriter, RequestRecord
from proxy_app.scheduler import LocalScheduler, Revoked, Scheduler, SchedulerError
from proxy_app.upstream import Upstream, make_client, make_transport

log = logging.getLogger("seadragon.gateway")

EXTENSION = "seadragon_gateway"
CLEANUP_KEY = "seadragon.cleanup"
SHUTTING_DOWN = "the gateway is shutting down"


@dataclass(frozen=True)
class GatewayOptions:
    """What the app is created with; the :class:`Gateway` is built from it when serving starts."""

    settings: Settings
    transport: httpx.AsyncBaseTransport | None = None  # replaces the upstream network in tests
    identity_refresh: float = REFRESH_INTERVAL
    health_interval: float | None = None  # None: the settings' HEALTH_INTERVAL
    prune_interval: float = PRUNE_INTERVAL  # seconds between request-log prunes


class Gateway:
    """The process-wide state while serving: client, backends, queue, identities, measurements.

    Built whole by :meth:`start` (every part exists and runs) and closed by :meth:`close`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine,
        writer: RequestLogWriter,
        client: httpx.AsyncClient,
        pool: BackendPool,
        scheduler: Scheduler,
        upstream: Upstream,
        cache: IdentityCache,
        redis: Any | None,
        prune_interval: float = PRUNE_INTERVAL,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.writer = writer
        self.client = client
        self.pool = pool
        self.scheduler = scheduler
        self.upstream = upstream
        self.cache = cache
        self.redis = redis  # only with SEADRAGON_REDIS_URL (scale-out)
        self.live = LiveStats()
        # docs/contract.md §10: set when shutdown starts; new generations are refused from then on.
        self.draining = False
        self._grace: asyncio.TimerHandle | None = None
        self._prune_interval = prune_interval
        self._stack = contextlib.AsyncExitStack()  # what :meth:`start` opened, closed in reverse
        self.metrics = Metrics(self.stats_snapshot, writer, upstream.open_connections)
        self.refusals = RefusalLog(writer, max_ips=settings.refusal_log_max_ips)
        self.access_log = AccessLog(settings.access_log)
        cache.on_refresh(self._recheck_waiting)
        self.replies = ReplyRuns()  # web-chat answers being written (docs/contract.md §14)
        self.policies = PolicyGate(  # docs/contract.md §7, §16
            cache, make_limits(redis), engine, default_reserve=settings.daily_tokens_reserve
        )

    @classmethod
    async def start(cls, options: GatewayOptions) -> Gateway:
        """Build every part and start it, or raise :class:`StartupError` with nothing left running.

        Each part's closer is registered before the part starts (every closer copes with a
        part that never started), so a failure anywhere closes what started, in reverse.
        """
        settings = options.settings
        async with contextlib.AsyncExitStack() as stack:
            engine = make_async_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            transport = make_transport(settings, options.transport)
            client = make_client(settings, transport)
            stack.push_async_callback(client.aclose)
            redis = _redis(settings)
            if redis is not None:
                stack.push_async_callback(redis.aclose)
            pool = BackendPool(
                settings.backends,
                client,
                interval=options.health_interval or settings.health_interval,
                timeout=settings.health_timeout,
                failures=settings.health_failures,
            )
            gateway = cls(
                settings,
                engine=engine,
                writer=RequestLogWriter(make_async_sessionmaker(engine)),
                client=client,
                pool=pool,
                scheduler=_make_scheduler(settings, pool, redis),
                upstream=Upstream(transport, settings, functools.partial(_connect_failed, pool)),
                cache=IdentityCache(engine, settings, interval=options.identity_refresh),
                redis=redis,
                prune_interval=options.prune_interval,
            )
            try:
                await gateway._open(stack)
            except StartupError:
                raise
            except Exception as exc:
                raise StartupError(f"the gateway could not start: {type(exc).__name__}: {exc}") from exc
            gateway._stack = stack.pop_all()
        return gateway

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the parts in dependency order; ``stack`` closes them in the reverse one."""
        stack.push_async_callback(asyncio.to_thread, self.access_log.flush)  # the last lines, off the loop
        stack.push_async_callback(self.writer.close)
        stack.callback(self.refusals.flush)  # into the writer, before it closes
        await self.writer.start()
        stack.push_async_callback(self.cache.close)
        await self.cache.start()
        if not self.cache.loaded:
            raise StartupError(
                "cannot read the identities from the database "
                f"({self.cache.last_error}); is it migrated? `python asgi.py` migrates before it serves"
            )
        stack.push_async_callback(self.policies.close)
        await self.policies.start()
        stack.push_async_callback(self.scheduler.close)
        await self.scheduler.start()
        stack.push_async_callback(self.replies.close)  # answers still being written: stopped, stored
        if self.redis is None:  # alone, no other instance can still be writing an answer left "streaming"
            async with make_async_sessionmaker(self.engine)() as session:
                await end_orphans(session)
        loops = [
            asyncio.create_task(self._sample_every_second(), name="live-stats-sampler"),
            asyncio.create_task(
                prune_periodically(self.engine, self.settings.log_retention_days, self._prune_interval),
                name="request-log-pruner",
            ),
        ]
        stack.push_async_callback(_cancel, loops)

    def begin_shutdown(self) -> None:
        """Shutdown starts (docs/contract.md §10): waiting requests get 503 now, streams get the grace.

        New generations are refused with 503; whatever is still relayed after
        ``SHUTDOWN_GRACE`` seconds ends with an in-band error (or a 503 if its
        headers have not gone out).
        """
        if self.draining:
            return
        self.draining = True
        for ticket in self.scheduler.waiting():
            self.scheduler.cancel(
                ticket.request_id, SchedulerError(SHUTTING_DOWN, retry_after=DEFAULT_RETRY_AFTER)
            )
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(self.settings.shutdown_grace, self._end_streams)

    def _end_streams(self) -> None:
        ended = self.upstream.abort_all(Unavailable(SHUTTING_DOWN))
        if ended:
            log.warning("shutdown grace over: ended %d request(s) still being relayed", ended)

    async def close(self) -> None:
        """Fail the waiting, stop the loops, flush the log and usage, close the clients."""
        if self._grace is not None:
            self._grace.cancel()
        await self._stack.aclose()

    async def identify(self, principal: Principal) -> Identity:
        """Who is calling (:class:`ClassificationError` if nobody allowed); counts a key's use."""
        await self.cache.learn(principal.credentials)
        identity = identify(principal, self.cache.snapshot, self.settings)
        if identity.api_key_id is not None:
            self.cache.touch_key(identity.api_key_id)
        return identity

    def finish(self, record: RequestRecord, *, live: bool, identity: Identity | None = None) -> None:
        """A request ended: its log row and access-log line, and (for generations) the live numbers."""
        self.refusals.record(record)  # the row, or a count on its IP's row (proxy_app/refusal_log.py)
        write_access_line(self.access_log, record, identity)
        self.policies.spent(record)
        self.metrics.observe(record)
        if live:
            self.live.observe(record)
        elif record.status >= 400:
            # The dashboard's answers count every refusal (a bad key on /api/tags too), not only generations.
            self.live.refused(record.status)

    def stats_snapshot(self) -> dict:
        """The scheduler's queue and slot numbers."""
        return self.scheduler.snapshot()

    def healthy_backends(self) -> list[BackendState]:
        """Backends that answered their last health check."""
        return [backend for backend in self.pool.backends if backend.healthy]

    def _recheck_waiting(self, snapshot: Snapshot) -> None:
        """Refuse queued requests whose key, whitelist entry or login is gone."""
        for ticket in self.scheduler.waiting():
            if ticket.principal is None:
                continue  # served for an identity checked elsewhere (the web chat's session)
            try:
                identify(ticket.principal, snapshot, self.settings)
            except ClassificationError as exc:
                self.scheduler.cancel(ticket.request_id, Revoked(exc.message, status=exc.status))

    async def _sample_every_second(self) -> None:
        # The dashboard's queue history is drawn from these real samples.
        while True:
            await asyncio.sleep(1.0)
            self.live.sample(self.stats_snapshot())
            self.refusals.roll()  # a minute's collapsed refusals are written when it is over


class StartupError(RuntimeError):
    """The gateway could not be built whole; whatever had started is closed again."""


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _redis(settings: Settings) -> Any | None:
    if not settings.redis_url:
        return None
    from redis.asyncio import Redis  # only scale-out needs it

    return Redis.from_url(settings.redis_url)


def _make_scheduler(settings: Settings, pool: BackendPool, redis: Any | None) -> Scheduler:
    if redis is None:
        return LocalScheduler(settings, pool)
    # Scale-out: every instance shares one queue and one set of slots.
    from proxy_app.scheduler_redis import RedisScheduler

    return RedisScheduler(settings, pool, redis)


def _connect_failed(pool: BackendPool, url: str, error: str) -> None:
    # Take the backend out of rotation now rather than at the next health check.
    for backend in pool.backends:
        if backend.url == url:
            pool.mark_failed(backend, error)


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


async def begin_shutdown(app: Quart) -> None:
    """Tell the app's gateway that shutdown starts (the launcher calls this on SIGTERM/SIGINT)."""
    gw = app.extensions.get(EXTENSION)
    if gw is not None:
        gw.begin_shutdown()


def install(app: Quart, options: GatewayOptions) -> None:
    """Build the gateway whole when serving starts, close it when serving ends."""
    app.asgi_app = CleanupMiddleware(app.asgi_app)  # type: ignore[method-assign]

    @app.while_serving
    async def lifespan():
        gw = await Gateway.start(options)
        app.extensions[EXTENSION] = gw
        try:
            yield
        finally:
            del app.extensions[EXTENSION]
            await gw.close()
