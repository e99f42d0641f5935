"""Redis schedulers sharing one queue (a cluster of instances) and enqueueing on them."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from redis.asyncio import Redis

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import (
    Ticket,
)
from proxy_app.scheduler_redis import RedisScheduler
from tests.proxy.scheduling import make_settings, tags_handler
from tests.waiting import await_until

LEASE = 1.0


TICK = 0.05


class Cluster:
    """Scheduler instances sharing one Redis key prefix, each with its own client and pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"sdtest:{uuid.uuid4().hex[:12]}"
        self.instances: list[tuple[RedisScheduler, Redis, httpx.AsyncClient]] = []

    async def add(self, *slots: int, clock=None, loaded=None, **overrides) -> RedisScheduler:
        """Start another instance over backends b0, b1… with the given slots (and /api/ps answers)."""
        client = Redis.from_url(self.url)
        hosts = {f"b{i}": [] for i in range(len(slots or (1,)))}
        http = httpx.AsyncClient(transport=httpx.MockTransport(tags_handler(hosts, loaded)))
        pool = BackendPool([Backend(f"http://b{i}:11434", n) for i, n in enumerate(slots or (1,))], http)
        scheduler = RedisScheduler(
            make_settings(**overrides), pool, client, prefix=self.prefix, lease=LEASE, tick=TICK, clock=clock
        )
        await scheduler.start()
        self.instances.append((scheduler, client, http))
        return scheduler

    async def close(self) -> None:
        """Close every instance and delete every key under the prefix."""
        for scheduler, _client, http in self.instances:
            await scheduler.close()
            await http.aclose()
        cleaner = Redis.from_url(self.url)
        keys = [key async for key in cleaner.scan_iter(f"{self.prefix}:*")]
        if keys:
            await cleaner.delete(*keys)
        await cleaner.aclose()
        for _, client, _ in self.instances:
            await client.aclose()


async def enqueue(scheduler: RedisScheduler, ticket: Ticket) -> asyncio.Task:
    """Start acquire() and wait until the ticket is in the shared queue."""
    task = asyncio.create_task(scheduler.acquire(ticket))
    await await_until(lambda: task.done() or scheduler.position(ticket.request_id) is not None)
    return task
